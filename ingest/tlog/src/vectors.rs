//! The test vectors of `docs/ledger.md`: seven entries with payload
//! `entry-<seq>` recorded at `T0 + 1000 * seq` ns. The ledger's store tests
//! check its stored hashes and proofs against these same constants.

use crate::hash::Hash;

/// `recorded_at` (unix ns) of entry 0.
pub const T0: i64 = 1_764_000_000_000_000_000;

pub const ENTRY_0: &str = "efd4d6788ae4b8bc2b0da7c621a7e8b5e697d7770d39df3961015f5928a1294d";
pub const CHAIN_0: &str = "5cf9c261a99c6a2090eb126ecc986e32b06103e67dc7373a7c1bc43107cd6d09";
pub const CHAIN_6: &str = "ebe81ed2937a35aba9282d27d889e78788134b9ec1b2d1a319bc614a2ac9b119";
pub const MTH_2: &str = "9db58bca387f92a70a204160c4a3e663fad758b25a1190aabcaebabb3e1a62b4";
pub const MTH_3: &str = "d1cc7f16f31d24043f4ed89ca201d0f967c4f3139238a7cd01383b718ab8489d";
pub const MTH_7: &str = "dc9c20a73af87603725de3c068976c2f11f131f8b28b599a1fd7c64f481fa89f";
pub const MTH_EMPTY: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
pub const INCLUSION_5_7: [&str; 3] = [
    "d14b3d31a1edee88a1481803da1790bd1af04db38bcbed9091ac44e9b0f29e7b",
    "6874ee25c33a4435ece687be99ee6289888edec5cf70bc49d383288b94c5c319",
    "528e59b90d9990c3e1cc94572a463550ef6260f2ea6a6b34a8bef1ce722dc274",
];
pub const CONSISTENCY_3_7: [&str; 4] = [
    "69086544f6da41f9642acd845411d71399ac71cb18c79c41338ed819c0d729e7",
    "f77c830e051e56c14737d78c045440dcab9714ca2c967636c45240197dcd3031",
    "9db58bca387f92a70a204160c4a3e663fad758b25a1190aabcaebabb3e1a62b4",
    "a7c582906c431cc1dc45b16597337413e7d3c56893c55bb6a83a65fa8b0b0d76",
];

/// `recorded_at` of entry `seq`.
pub fn recorded_at(seq: u64) -> i64 {
    T0 + 1000 * seq as i64
}

/// The payload of entry `seq`.
pub fn payload(seq: u64) -> Vec<u8> {
    format!("entry-{seq}").into_bytes()
}

/// Lowercase hex of each hash.
pub fn hexes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(crate::hash::to_hex).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{chain_hash, empty_root, entry_hash, node, to_hex as hex};
    use crate::proof;

    #[test]
    fn spec_vectors_from_reference() {
        let leaves: Vec<Hash> = (0..7).map(|i| entry_hash(i, recorded_at(i), &payload(i))).collect();
        let mut chain = [0; 32];
        let chains: Vec<Hash> = leaves
            .iter()
            .map(|leaf| {
                chain = chain_hash(&chain, leaf);
                chain
            })
            .collect();
        assert_eq!(hex(&leaves[0]), ENTRY_0);
        assert_eq!(hex(&chains[0]), CHAIN_0);
        assert_eq!(hex(&chains[6]), CHAIN_6);
        assert_eq!(hex(&proof::root(&leaves[..2])), MTH_2);
        assert_eq!(hex(&node(&leaves[0], &leaves[1])), MTH_2);
        assert_eq!(hex(&proof::root(&leaves[..3])), MTH_3);
        assert_eq!(hex(&proof::root(&leaves)), MTH_7);
        assert_eq!(hex(&proof::root(&[])), MTH_EMPTY);
        assert_eq!(hex(&empty_root()), MTH_EMPTY);

        let inclusion = proof::inclusion_path(5, &leaves);
        assert_eq!(hexes(&inclusion), INCLUSION_5_7);
        assert!(proof::verify_inclusion(&leaves[5], 5, 7, &inclusion, &proof::root(&leaves)));
        let consistency = proof::consistency_proof(3, &leaves);
        assert_eq!(hexes(&consistency), CONSISTENCY_3_7);
        assert!(proof::verify_consistency(
            3,
            7,
            &proof::root(&leaves[..3]),
            &proof::root(&leaves),
            &consistency
        ));
    }
}
