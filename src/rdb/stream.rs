//! Stream nodes: how the encoder splits a stream's entries into listpack nodes as Redis
//! does, and how the reader takes a node apart.
//!
//! A node is a 16-byte key (its master ID, big-endian) and a listpack: the master entry
//! (live count, deleted count, the master fields' count, the master field names, 0), then
//! per entry: flags (1 deleted, 2 same fields as the master), the ID's two differences
//! from the master ID, the field count and field/value pairs (or, with same fields, the
//! values alone), and lp-count (the entry's elements before it: N+3 with same fields,
//! else 2N+4).
//!
//! **Invariants**
//! - `NodePlan` is Redis 7's `streamAppendItem` rule with the default
//!   `stream-node-max-bytes` 4096 and `stream-node-max-entries` 100: a new node starts when
//!   the node's bytes plus the entry's raw field and value bytes reach 4096, or when it
//!   holds 100 entries; so a stream built by `XADD` alone gets Redis's own node shapes.
//! - A node never holds more than 100 entries, so its live count is one listpack byte
//!   (patched when the node is complete).

use super::listpack::{self, Elem};
use super::num::canonical_i64;
use crate::keyspace::{SeqView, StreamId};
use bumpalo::collections::Vec as BVec;
use bumpalo::Bump;

/// Redis's default `stream-node-max-bytes`.
pub(crate) const NODE_MAX_BYTES: usize = 4096;
/// Redis's default `stream-node-max-entries`.
pub(crate) const NODE_MAX_ENTRIES: usize = 100;
/// Entry flag: deleted.
pub(crate) const FLAG_DELETED: i64 = 1;
/// Entry flag: same fields as the master entry.
pub(crate) const FLAG_SAMEFIELDS: i64 = 2;

/// Where the next entry goes: Redis's node-splitting rule, replayed over sizes only (the
/// encoder's first pass counts nodes with it, the second builds them with it).
pub(crate) struct NodePlan<'a> {
    open: bool,
    /// The current node's master ID.
    pub master: StreamId,
    /// The master fields, back to back, and where each ends.
    fields: BVec<'a, u8>,
    ends: BVec<'a, usize>,
    /// The node's listpack bytes (header and terminator included), as `lpBytes` says.
    bytes: usize,
    /// Entries in the node.
    pub count: usize,
}

/// Where one entry went.
pub(crate) struct Placed {
    /// It starts a new node (whose master ID is the entry's).
    pub new_node: bool,
    /// It has the master entry's fields (stored once, in the master entry).
    pub same_fields: bool,
}

impl<'a> NodePlan<'a> {
    pub fn new(arena: &'a Bump) -> Self {
        NodePlan {
            open: false,
            master: StreamId::default(),
            fields: BVec::new_in(arena),
            ends: BVec::new_in(arena),
            bytes: 0,
            count: 0,
        }
    }

    fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.fields[start..self.ends[i]]
    }

    /// Places the entry `id` with elements `elems` (field, value, ...).
    pub fn add(&mut self, id: StreamId, elems: &dyn SeqView) -> Placed {
        let n = elems.len() / 2;
        // One walk: raw bytes (the split rule's), listpack bytes of the fields and of the
        // values, and whether the fields are the master's.
        let (mut raw, mut field_bytes, mut value_bytes) = (0usize, 0usize, 0usize);
        let mut same = self.open && n == self.ends.len();
        let mut i = 0;
        elems.for_each(&mut |e| {
            raw += e.len();
            if i % 2 == 0 {
                field_bytes += listpack::entry_size(e);
                if same && i / 2 < self.ends.len() {
                    same = self.field(i / 2) == e;
                }
            } else {
                value_bytes += listpack::entry_size(e);
            }
            i += 1;
        });
        let new_node = !self.open
            || self.bytes + raw >= NODE_MAX_BYTES
            || self.count >= NODE_MAX_ENTRIES;
        if new_node {
            self.open = true;
            self.master = id;
            self.fields.clear();
            self.ends.clear();
            let mut i = 0;
            let (fields, ends) = (&mut self.fields, &mut self.ends);
            elems.for_each(&mut |e| {
                if i % 2 == 0 {
                    fields.extend_from_slice(e);
                    ends.push(fields.len());
                }
                i += 1;
            });
            // Header and terminator; count, deleted, the field count, the names, the 0.
            self.bytes =
                listpack::HEADER + 1 + 2 + 2 + listpack::int_entry_size(n as i64) + field_bytes + 2;
            self.count = 0;
            same = true;
        }
        let (ms, seq) = diffs(id, self.master);
        let mut b = listpack::int_entry_size(FLAG_SAMEFIELDS)
            + listpack::int_entry_size(ms)
            + listpack::int_entry_size(seq);
        let lp_count = if same { n + 3 } else { 2 * n + 4 };
        b += listpack::int_entry_size(lp_count as i64);
        b += value_bytes;
        if !same {
            b += listpack::int_entry_size(n as i64) + field_bytes;
        }
        self.bytes += b;
        self.count += 1;
        Placed {
            new_node,
            same_fields: same,
        }
    }
}

/// An entry ID's differences from its node's master ID, as the listpack stores them
/// (wrapping: a sequence difference may be negative).
pub(crate) fn diffs(id: StreamId, master: StreamId) -> (i64, i64) {
    (
        id.ms.wrapping_sub(master.ms) as i64,
        id.seq.wrapping_sub(master.seq) as i64,
    )
}

fn int_of(e: &Elem<'_>) -> Option<i64> {
    match *e {
        Elem::Int(v) => Some(v),
        Elem::Str(s) => canonical_i64(s),
    }
}

/// Takes a node's listpack apart (validating it as Redis's deep sanitization does) and
/// calls `f` with each live entry's ID and elements (field, value, ...), in order.
/// Errors carry the offset in the listpack.
pub(crate) fn parse_node<'a>(
    lp: &'a [u8],
    master: StreamId,
    mut f: impl FnMut(StreamId, &[Elem<'a>]) -> Result<(), (usize, String)>,
) -> Result<(), (usize, String)> {
    // (element, its offset) for the whole node: nodes are small (4 KiB by default).
    let mut el: Vec<(Elem<'a>, usize)> = Vec::new();
    listpack::parse_at(lp, |e, at| {
        el.push((e, at));
        Ok(())
    })?;
    if el.is_empty() {
        return Err((0, "empty listpack inside a stream".into()));
    }
    let mut i = 0usize;
    let end = lp.len().saturating_sub(1);
    let el = &el[..];
    let mut next = |what: &str| -> Result<(Elem<'a>, usize), (usize, String)> {
        let r = el
            .get(i)
            .copied()
            .ok_or((end, format!("stream node ends before its {what}")));
        i += 1;
        r
    };
    let int = |(e, o): (Elem<'a>, usize), what: &str| -> Result<i64, (usize, String)> {
        int_of(&e).ok_or((o, format!("stream node's {what} is not an integer")))
    };
    let count = |v: i64, o: usize, what: &str| -> Result<u64, (usize, String)> {
        u64::try_from(v).map_err(|_| (o, format!("stream node's {what} is negative ({v})")))
    };
    let e = next("live count")?;
    let live = count(int(e, "live count")?, e.1, "live count")?;
    let e = next("deleted count")?;
    let deleted = count(int(e, "deleted count")?, e.1, "deleted count")?;
    let e = next("master field count")?;
    let nmaster = count(int(e, "master field count")?, e.1, "master field count")?;
    if nmaster > el.len() as u64 {
        return Err((e.1, format!("stream node's master field count {nmaster} exceeds its elements")));
    }
    let master_at = 3;
    for _ in 0..nmaster {
        next("master fields")?;
    }
    let e = next("master entry terminator")?;
    if int(e, "master entry terminator")? != 0 {
        return Err((e.1, "stream node's master entry does not end with 0".into()));
    }
    let total = live
        .checked_add(deleted)
        .ok_or((HEADER_AT, "stream node's entry counts overflow".to_string()))?;
    let (mut seen_live, mut seen_deleted) = (0u64, 0u64);
    let mut elems: Vec<Elem<'a>> = Vec::new();
    for _ in 0..total {
        let e = next("entry flags")?;
        let flags = int(e, "entry flags")?;
        if !(0..=3).contains(&flags) {
            return Err((e.1, format!("stream entry flags {flags} are not 0 to 3")));
        }
        let ms = int(next("entry ID")?, "entry ID")?;
        let seq = int(next("entry ID")?, "entry ID")?;
        let id = StreamId::new(
            master.ms.wrapping_add(ms as u64),
            master.seq.wrapping_add(seq as u64),
        );
        elems.clear();
        let same = flags & FLAG_SAMEFIELDS != 0;
        let n = if same {
            for k in 0..nmaster as usize {
                elems.push(el[master_at + k].0);
                elems.push(next("entry values")?.0);
            }
            nmaster
        } else {
            let e = next("entry field count")?;
            let n = count(int(e, "entry field count")?, e.1, "entry field count")?;
            if n > el.len() as u64 {
                return Err((e.1, format!("stream entry's field count {n} exceeds its node")));
            }
            for _ in 0..2 * n {
                elems.push(next("entry fields")?.0);
            }
            n
        };
        let e = next("entry lp-count")?;
        let want = if same { n + 3 } else { 2 * n + 4 };
        let got = int(e, "entry lp-count")?;
        if got != want as i64 {
            return Err((e.1, format!("stream entry's lp-count is {got}, its elements say {want}")));
        }
        if flags & FLAG_DELETED != 0 {
            seen_deleted += 1;
        } else {
            seen_live += 1;
            f(id, &elems)?;
        }
    }
    if let Ok((_, o)) = next("") {
        return Err((o, "stream node has elements after its last entry".into()));
    }
    if seen_live != live || seen_deleted != deleted {
        return Err((
            HEADER_AT,
            format!(
                "stream node says {live} live and {deleted} deleted entries, holds {seen_live} and {seen_deleted}"
            ),
        ));
    }
    Ok(())
}

/// Errors about the whole node point at its first element.
const HEADER_AT: usize = listpack::HEADER;
