//! How object keys are laid out in redb: every key of the `data` table is the 16-byte
//! object id followed by the object's own key, so one object's keys are one contiguous
//! range and a prefix or range scan of an object is a range scan of the table.

use std::ops::Bound;

use crate::object::ObjectId;

/// The table key for `key` of `object`.
pub fn data_key(object: ObjectId, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + key.len());
    out.extend_from_slice(&object.0);
    out.extend_from_slice(key);
    out
}

/// The smallest byte string greater than every string starting with `prefix`, or `None`
/// when there is none (the prefix is empty or all `0xff`).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last < 0xff {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}

/// The object's own-key range selected by a prefix and optional `[start, end)` bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    pub lower: Bound<Vec<u8>>,
    pub upper: Bound<Vec<u8>>,
}

impl KeyRange {
    /// Every key starting with `prefix` and within `[start, end)`.
    pub fn new(prefix: Option<&[u8]>, start: Option<&[u8]>, end: Option<&[u8]>) -> KeyRange {
        let prefix = prefix.unwrap_or_default();
        let mut lower = prefix.to_vec();
        if let Some(start) = start {
            lower = lower.max(start.to_vec());
        }
        let upper = match (prefix_successor(prefix), end) {
            (Some(p), Some(e)) => Bound::Excluded(p.min(e.to_vec())),
            (Some(p), None) => Bound::Excluded(p),
            (None, Some(e)) => Bound::Excluded(e.to_vec()),
            (None, None) => Bound::Unbounded,
        };
        KeyRange {
            lower: Bound::Included(lower),
            upper,
        }
    }

    /// Whether an object key falls in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        let above = match &self.lower {
            Bound::Included(l) => key >= l.as_slice(),
            Bound::Excluded(l) => key > l.as_slice(),
            Bound::Unbounded => true,
        };
        let below = match &self.upper {
            Bound::Included(u) => key <= u.as_slice(),
            Bound::Excluded(u) => key < u.as_slice(),
            Bound::Unbounded => true,
        };
        above && below
    }

    /// Whether the range can hold no key at all.
    pub fn is_empty(&self) -> bool {
        match (&self.lower, &self.upper) {
            (Bound::Included(l), Bound::Excluded(u)) => l >= u,
            _ => false,
        }
    }

    /// The same range as table keys of `object`.
    pub fn to_table_range(&self, object: ObjectId) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
        let map = |b: &Bound<Vec<u8>>| match b {
            Bound::Included(k) => Bound::Included(data_key(object, k)),
            Bound::Excluded(k) => Bound::Excluded(data_key(object, k)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let lower = match &self.lower {
            Bound::Unbounded => Bound::Included(object.0.to_vec()),
            b => map(b),
        };
        let upper = match &self.upper {
            Bound::Unbounded => match prefix_successor(&object.0) {
                Some(next) => Bound::Excluded(next),
                None => Bound::Unbounded,
            },
            b => map(b),
        };
        (lower, upper)
    }
}

/// The alarm index key: due time (big-endian, so the index sorts by time) then object id.
pub fn alarm_index_key(at_ms: u64, object: ObjectId) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..8].copy_from_slice(&at_ms.to_be_bytes());
    out[8..].copy_from_slice(&object.0);
    out
}

/// Splits an alarm index key.
pub fn parse_alarm_index_key(key: &[u8]) -> Option<(u64, ObjectId)> {
    let at = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let id = ObjectId(key.get(8..24)?.try_into().ok()?);
    Some((at, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xff, 0xff]), None);
        assert_eq!(prefix_successor(b""), None);
    }

    #[test]
    fn ranges_combine_prefix_and_bounds() {
        let r = KeyRange::new(Some(b"msg:"), Some(b"msg:5"), None);
        assert!(r.contains(b"msg:5"));
        assert!(r.contains(b"msg:9"));
        assert!(!r.contains(b"msg:4"));
        assert!(!r.contains(b"msh"));
        let r = KeyRange::new(None, None, Some(b"b"));
        assert!(r.contains(b"a"));
        assert!(!r.contains(b"b"));
        assert!(KeyRange::new(Some(b"b"), None, Some(b"a")).is_empty());
    }

    #[test]
    fn table_ranges_stay_inside_the_object() {
        let id = ObjectId([7; 16]);
        let (lo, hi) = KeyRange::new(None, None, None).to_table_range(id);
        assert_eq!(lo, Bound::Included(vec![7; 16]));
        let mut next = vec![7; 16];
        next[15] = 8;
        assert_eq!(hi, Bound::Excluded(next));
    }

    #[test]
    fn alarm_keys_sort_by_time() {
        let a = alarm_index_key(5, ObjectId([9; 16]));
        let b = alarm_index_key(6, ObjectId([0; 16]));
        assert!(a < b);
        assert_eq!(parse_alarm_index_key(&a), Some((5, ObjectId([9; 16]))));
    }
}
