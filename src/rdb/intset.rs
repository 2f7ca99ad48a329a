//! Intset: Redis's sorted array of unique integers (`u32` width 2/4/8, `u32` count, LE
//! values).

/// Writes an intset of `sorted` (ascending, unique) values.
pub fn write(sorted: &[i64], out: &mut impl super::listpack::LpBuf) {
    let width: u32 = if sorted.iter().all(|&v| i16::try_from(v).is_ok()) {
        2
    } else if sorted.iter().all(|&v| i32::try_from(v).is_ok()) {
        4
    } else {
        8
    };
    out.put(&width.to_le_bytes());
    out.put(&(sorted.len() as u32).to_le_bytes());
    for &v in sorted {
        match width {
            2 => out.put(&(v as i16).to_le_bytes()),
            4 => out.put(&(v as i32).to_le_bytes()),
            _ => out.put(&v.to_le_bytes()),
        }
    }
}

/// Reads an intset blob, checking its size, order and uniqueness.
pub fn parse(b: &[u8], mut f: impl FnMut(i64)) -> Result<(), (usize, String)> {
    if b.len() < 8 {
        return Err((0, "intset shorter than its header".into()));
    }
    let width = u32::from_le_bytes(b[..4].try_into().unwrap()) as usize;
    if !matches!(width, 2 | 4 | 8) {
        return Err((0, format!("intset element width {width} is not 2, 4 or 8")));
    }
    let count = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
    if (b.len() - 8) != count.saturating_mul(width) {
        return Err((
            4,
            format!(
                "intset of {count} × {width} bytes does not fill its {} bytes",
                b.len()
            ),
        ));
    }
    let mut prev: Option<i64> = None;
    for (i, c) in b[8..].chunks_exact(width).enumerate() {
        let v = match width {
            2 => i64::from(i16::from_le_bytes(c.try_into().unwrap())),
            4 => i64::from(i32::from_le_bytes(c.try_into().unwrap())),
            _ => i64::from_le_bytes(c.try_into().unwrap()),
        };
        if prev.is_some_and(|p| p >= v) {
            return Err((8 + i * width, "intset not sorted or has duplicates".into()));
        }
        prev = Some(v);
        f(v);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn roundtrip_widths() {
        for set in [
            vec![-3i64, 0, 7],
            vec![-70000, 1],
            vec![i64::MIN, 0, i64::MAX],
            vec![],
        ] {
            let mut b = Vec::new();
            super::write(&set, &mut b);
            let mut got = Vec::new();
            super::parse(&b, |v| got.push(v)).unwrap();
            assert_eq!(got, set);
        }
        assert!(super::parse(&[2, 0, 0, 0, 2, 0, 0, 0, 5, 0, 5, 0], |_| {}).is_err());
        assert!(super::parse(&[3, 0, 0, 0, 0, 0, 0, 0], |_| {}).is_err());
    }
}
