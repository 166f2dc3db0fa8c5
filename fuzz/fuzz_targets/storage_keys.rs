//! Storage key encoding: `KeyRange::new` + `contains` agree with the plain definition
//! (prefix, `[start, end)`), the table range of an object selects exactly the object's
//! keys in the range and never another object's, and alarm index keys round-trip and
//! sort by due time then object.

#![no_main]

use std::ops::Bound;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use lodge_core::keys::{
    KeyRange, alarm_index_key, data_key, parse_alarm_index_key, prefix_successor,
};
use lodge_core::object::ObjectId;

#[derive(Arbitrary, Debug)]
struct Input {
    prefix: Option<Vec<u8>>,
    start: Option<Vec<u8>>,
    end: Option<Vec<u8>>,
    object: [u8; 16],
    other: [u8; 16],
    alarms: Vec<(u64, [u8; 16])>,
    raw_index_key: Vec<u8>,
    keys: Vec<Vec<u8>>,
}

fn in_bounds(key: &[u8], lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> bool {
    let above = match lower {
        Bound::Included(l) => key >= l.as_slice(),
        Bound::Excluded(l) => key > l.as_slice(),
        Bound::Unbounded => true,
    };
    let below = match upper {
        Bound::Included(u) => key <= u.as_slice(),
        Bound::Excluded(u) => key < u.as_slice(),
        Bound::Unbounded => true,
    };
    above && below
}

fuzz_target!(|input: Input| {
    let prefix = input.prefix.as_deref();
    let start = input.start.as_deref();
    let end = input.end.as_deref();
    let range = KeyRange::new(prefix, start, end);
    let object = ObjectId(input.object);
    let other = ObjectId(input.other);
    let (lower, upper) = range.to_table_range(object);

    // Keys to try: the fuzzer's, the bounds themselves and their neighbours.
    let mut keys = input.keys.clone();
    for bound in [prefix, start, end].into_iter().flatten() {
        keys.push(bound.to_vec());
        let mut longer = bound.to_vec();
        longer.push(0);
        keys.push(longer);
        if let Some(shorter) = bound.split_last().map(|(_, rest)| rest.to_vec()) {
            keys.push(shorter);
        }
        keys.extend(prefix_successor(bound));
    }

    for key in &keys {
        let expected = prefix.is_none_or(|p| key.starts_with(p))
            && start.is_none_or(|s| key.as_slice() >= s)
            && end.is_none_or(|e| key.as_slice() < e);
        assert_eq!(range.contains(key), expected, "{range:?} {key:?}");
        if range.is_empty() {
            assert!(!expected, "an empty range holds {key:?}: {range:?}");
        }
        assert_eq!(
            in_bounds(&data_key(object, key), &lower, &upper),
            expected,
            "table range of {range:?} and {key:?}"
        );
        if other != object {
            assert!(
                !in_bounds(&data_key(other, key), &lower, &upper),
                "another object's key {key:?} is in the table range of {range:?}"
            );
        }
    }
    // A range that is not empty holds its lower bound.
    if !range.is_empty()
        && let Bound::Included(l) = &range.lower
    {
        assert!(range.contains(l), "{range:?}");
    }

    if let Some(p) = prefix {
        match prefix_successor(p) {
            Some(next) => {
                assert!(next.as_slice() > p);
                for key in &keys {
                    if key.starts_with(p) {
                        assert!(key < &next, "{p:?} {key:?} {next:?}");
                    } else if key.as_slice() > p {
                        assert!(key >= &next, "{p:?} {key:?} {next:?}");
                    }
                }
            }
            None => assert!(p.iter().all(|&b| b == 0xff), "{p:?}"),
        }
    }

    // Alarm index keys.
    let encoded: Vec<([u8; 24], (u64, ObjectId))> = input
        .alarms
        .iter()
        .map(|&(at, id)| (alarm_index_key(at, ObjectId(id)), (at, ObjectId(id))))
        .collect();
    for (key, (at, id)) in &encoded {
        assert_eq!(parse_alarm_index_key(key), Some((*at, *id)));
    }
    for pair in encoded.windows(2) {
        let (k1, a1) = &pair[0];
        let (k2, a2) = &pair[1];
        assert_eq!(k1.cmp(k2), a1.cmp(a2), "{a1:?} {a2:?}");
    }
    match parse_alarm_index_key(&input.raw_index_key) {
        Some((at, id)) => {
            assert!(input.raw_index_key.len() >= 24);
            assert_eq!(&alarm_index_key(at, id)[..], &input.raw_index_key[..24]);
        }
        None => assert!(input.raw_index_key.len() < 24),
    }
});
