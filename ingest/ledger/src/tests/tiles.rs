//! Tiles and entry bundles read from stored nodes against the reference:
//! every tile hash is `MTH` of its range of leaves.

use super::super::Error;
use super::super::proof;
use super::{T0, filled, leaves, runtime};

#[test]
fn tiles_are_the_reference_roots_of_their_leaf_ranges() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        // 256 + 256 + 3 entries: two full level-0 tiles, a partial one of
        // width 3, and the partial level-1 tile of width 2.
        let n = 515;
        let ledger = filled(dir.path(), n).await;
        let all = leaves(n);
        assert_eq!(ledger.tile(0, 1, None).unwrap(), all[256..512]);
        assert_eq!(ledger.tile(0, 2, Some(3)).unwrap(), all[512..515]);
        assert_eq!(ledger.tile(0, 2, Some(1)).unwrap(), all[512..513]);
        let level1 = ledger.tile(1, 0, Some(2)).unwrap();
        assert_eq!(level1, vec![proof::root(&all[..256]), proof::root(&all[256..512])]);
        for (level, index, width) in
            [(0, 2, Some(4)), (0, 2, None), (1, 0, Some(3)), (1, 0, None), (2, 0, Some(1))]
        {
            assert!(
                matches!(ledger.tile(level, index, width), Err(Error::OutOfRange(_))),
                "{level}/{index}/{width:?} is beyond 515 entries"
            );
        }
        let bundle = ledger.entry_bundle(2, Some(3)).unwrap();
        let entries = tlog::tiles::decode_bundle(&bundle, 3).unwrap();
        for (i, entry) in entries.iter().enumerate() {
            let seq = 512 + i as u64;
            assert_eq!(entry.recorded_at_ns, T0 + seq as i64);
            assert_eq!(entry.payload, seq.to_be_bytes());
            assert_eq!(tlog::hash::entry_hash(seq, entry.recorded_at_ns, &entry.payload), all[seq as usize]);
        }
        assert_eq!(
            tlog::tiles::decode_bundle(&ledger.entry_bundle(0, None).unwrap(), 256).unwrap().len(),
            256
        );
        assert!(matches!(ledger.entry_bundle(2, Some(4)), Err(Error::OutOfRange(_))));
    });
}
