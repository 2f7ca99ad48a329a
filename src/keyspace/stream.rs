//! Streams: entry IDs, the stream's metadata and its consumer groups, as a server exposes
//! them to a snapshot ([`StreamView`]) and as a load hands them back.
//!
//! **Invariants** (checked by the encoder and the reader, and by [`MemStream::new`]):
//! - entry IDs strictly ascend, and none is above the stream's `last_id`;
//! - an entry's elements alternate field, value (an even count);
//! - in a group, pending entries strictly ascend by ID; a consumer's pending IDs are
//!   unique and each is one of its group's pending entries; group names are unique in a
//!   stream, consumer names in a group.

use super::SeqView;
use std::fmt;

/// A stream entry ID (`<ms>-<seq>`, as `XADD` prints it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

impl StreamId {
    /// The ID `ms-seq`.
    pub const fn new(ms: u64, seq: u64) -> Self {
        StreamId { ms, seq }
    }

    /// The 16-byte form RDB stores (both parts big-endian, as in Redis's radix tree).
    pub(crate) fn to_be_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.ms.to_be_bytes());
        b[8..].copy_from_slice(&self.seq.to_be_bytes());
        b
    }

    pub(crate) fn from_be_bytes(b: [u8; 16]) -> Self {
        let (ms, seq) = b.split_at(8);
        StreamId {
            ms: u64::from_be_bytes(ms.try_into().expect("8 bytes")),
            seq: u64::from_be_bytes(seq.try_into().expect("8 bytes")),
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// What a stream keeps besides its entries (`XINFO STREAM`'s `last-generated-id`,
/// `recorded-first-entry-id`, `max-deleted-entry-id` and `entries-added`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamMeta {
    /// The last ID `XADD` generated (at least the last entry's).
    pub last_id: StreamId,
    /// The first entry's ID as the server recorded it (0-0 when empty).
    pub first_id: StreamId,
    /// The highest ID ever deleted (0-0: none).
    pub max_deleted_id: StreamId,
    /// Entries ever added.
    pub entries_added: u64,
}

/// An entry a consumer group delivered and that is not acknowledged yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingEntry {
    /// The entry's ID.
    pub id: StreamId,
    /// Last delivery, unix milliseconds.
    pub delivery_ms: i64,
    /// Times delivered.
    pub delivery_count: u64,
}

/// A consumer of a group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamConsumer {
    /// Its name.
    pub name: Vec<u8>,
    /// Last time it was seen (any read attempt), unix milliseconds.
    pub seen_ms: i64,
    /// Last successful read, unix milliseconds (RDB 11; older files give `seen_ms`).
    pub active_ms: i64,
    /// IDs of its group's pending entries that it owns.
    pub pending: Vec<StreamId>,
}

/// A consumer group (`XGROUP CREATE`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamGroup {
    /// Its name.
    pub name: Vec<u8>,
    /// The last ID delivered to it.
    pub last_id: StreamId,
    /// Its logical read counter (`entries-read`); `None` when the server does not know it
    /// (RDB 9 files, or Redis's -1).
    pub entries_read: Option<u64>,
    /// Its pending entries list, ascending by ID.
    pub pending: Vec<PendingEntry>,
    /// Its consumers.
    pub consumers: Vec<StreamConsumer>,
}

/// A stream, as a server exposes it to a snapshot (see [`Value::Stream`](super::Value)).
///
/// The snapshot writes the entries in nodes shaped as Redis shapes them (at most 100
/// entries or about 4 KiB each, fields shared with the node's first entry stored once),
/// whatever the server's own layout.
pub trait StreamView {
    /// Entries; must equal what `for_each` yields.
    fn len(&self) -> usize;
    /// Calls `f` with each entry in ascending ID order: its ID and its elements,
    /// alternating field and value.
    fn for_each(&self, f: &mut dyn FnMut(StreamId, &dyn SeqView));
    /// The stream's metadata.
    fn meta(&self) -> StreamMeta;
    /// Its consumer groups (default: none).
    fn groups(&self) -> &[StreamGroup] {
        &[]
    }
    /// No entries (an empty stream is still a key: it is written, unlike empty
    /// collections).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One stream entry: its ID and its elements (field, value, field, value, ...).
pub type StreamEntry = (StreamId, Vec<Box<[u8]>>);

/// An owned stream: [`MemKeyspace`](super::MemKeyspace)'s, and what a load hands over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemStream {
    entries: Vec<StreamEntry>,
    meta: StreamMeta,
    groups: Vec<StreamGroup>,
}

impl MemStream {
    /// A stream from its entries (ascending IDs, fields and values alternating), its
    /// metadata and its groups; refuses what breaks the stream invariants (see the module
    /// documentation), naming the first offence.
    pub fn new(
        entries: Vec<StreamEntry>,
        meta: StreamMeta,
        groups: Vec<StreamGroup>,
    ) -> Result<Self, String> {
        let mut prev: Option<StreamId> = None;
        for (id, fields) in &entries {
            if prev.is_some_and(|p| p >= *id) {
                return Err(format!("entry {id} does not come after entry {}", prev.unwrap_or_default()));
            }
            if fields.len() % 2 != 0 {
                return Err(format!("entry {id} has an odd number of elements ({})", fields.len()));
            }
            prev = Some(*id);
        }
        check_tail(prev, &meta)?;
        check_groups(&groups)?;
        Ok(MemStream {
            entries,
            meta,
            groups,
        })
    }

    /// The entries, ascending.
    pub fn entries(&self) -> &[StreamEntry] {
        &self.entries
    }

    /// The metadata.
    pub fn meta(&self) -> StreamMeta {
        self.meta
    }

    /// The consumer groups.
    pub fn groups(&self) -> &[StreamGroup] {
        &self.groups
    }
}

impl StreamView for MemStream {
    fn len(&self) -> usize {
        self.entries.len()
    }
    fn for_each(&self, f: &mut dyn FnMut(StreamId, &dyn SeqView)) {
        for (id, fields) in &self.entries {
            f(*id, fields)
        }
    }
    fn meta(&self) -> StreamMeta {
        self.meta
    }
    fn groups(&self) -> &[StreamGroup] {
        &self.groups
    }
}

/// The last entry (if any) is not above the stream's last ID.
pub(crate) fn check_tail(last_entry: Option<StreamId>, meta: &StreamMeta) -> Result<(), String> {
    match last_entry {
        Some(id) if id > meta.last_id => Err(format!(
            "entry {id} is above the stream's last ID {}",
            meta.last_id
        )),
        _ => Ok(()),
    }
}

/// The groups' invariants (module documentation); the error names the offence.
pub(crate) fn check_groups(groups: &[StreamGroup]) -> Result<(), String> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut names: Vec<&[u8]> = groups.iter().map(|g| &g.name[..]).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("consumer group {:?} appears twice", text(w[0])));
    }
    groups.iter().try_for_each(check_group)
}

/// One group's invariants (all but its name's uniqueness in the stream).
pub(crate) fn check_group(g: &StreamGroup) -> Result<(), String> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if let Some(w) = g.pending.windows(2).find(|w| w[0].id >= w[1].id) {
        return Err(format!(
            "group {:?}: pending entry {} is not above {} (the list ascends, once each)",
            text(&g.name),
            w[1].id,
            w[0].id
        ));
    }
    let mut cnames: Vec<&[u8]> = g.consumers.iter().map(|c| &c.name[..]).collect();
    cnames.sort_unstable();
    if let Some(w) = cnames.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!(
            "group {:?}: consumer {:?} appears twice",
            text(&g.name),
            text(w[0])
        ));
    }
    for c in &g.consumers {
        let mut ids = c.pending.clone();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!(
                "group {:?}, consumer {:?}: pending ID {} appears twice",
                text(&g.name),
                text(&c.name),
                w[0]
            ));
        }
        if let Some(id) = ids
            .iter()
            .find(|id| g.pending.binary_search_by(|p| p.id.cmp(id)).is_err())
        {
            return Err(format!(
                "group {:?}, consumer {:?}: pending ID {id} is not in the group's pending entries",
                text(&g.name),
                text(&c.name)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64, seq: u64) -> StreamId {
        StreamId::new(ms, seq)
    }

    #[test]
    fn ids_round_trip_their_rdb_bytes_and_print_as_redis_does() {
        let x = id(1_700_000_000_123, 7);
        assert_eq!(StreamId::from_be_bytes(x.to_be_bytes()), x);
        assert_eq!(x.to_string(), "1700000000123-7");
        assert!(id(1, 5) < id(2, 0) && id(2, 0) < id(2, 1));
    }

    #[test]
    fn new_refuses_what_a_loader_would() {
        let meta = StreamMeta {
            last_id: id(5, 0),
            ..Default::default()
        };
        let e = |ms| (id(ms, 0), vec![b"f".to_vec().into(), b"v".to_vec().into()]);
        assert!(MemStream::new(vec![e(1), e(2)], meta, vec![]).is_ok());
        let err = MemStream::new(vec![e(2), e(1)], meta, vec![]).unwrap_err();
        assert!(err.contains("does not come after"), "{err}");
        let err = MemStream::new(vec![e(1), e(6)], meta, vec![]).unwrap_err();
        assert!(err.contains("above the stream's last ID"), "{err}");
        let odd = (id(1, 0), vec![b"f".to_vec().into()]);
        assert!(MemStream::new(vec![odd], meta, vec![]).unwrap_err().contains("odd"));

        let pel = |ms| PendingEntry {
            id: id(ms, 0),
            delivery_ms: 1,
            delivery_count: 1,
        };
        let group = |pending: Vec<PendingEntry>, owned: Vec<StreamId>| StreamGroup {
            name: b"g".to_vec(),
            pending,
            consumers: vec![StreamConsumer {
                name: b"c".to_vec(),
                pending: owned,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(check_groups(&[group(vec![pel(1), pel(2)], vec![id(2, 0)])]).is_ok());
        for (bad, want) in [
            (vec![group(vec![pel(2), pel(1)], vec![])], "is not above"),
            (vec![group(vec![pel(1)], vec![id(3, 0)])], "not in the group's pending"),
            (vec![group(vec![pel(1)], vec![id(1, 0), id(1, 0)])], "appears twice"),
            (vec![group(vec![], vec![]), group(vec![], vec![])], "consumer group \"g\" appears twice"),
        ] {
            let err = check_groups(&bad).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
    }
}
