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

/// The committed-record vector (`docs/ledger.md`, "Committed records"):
/// salt 32 bytes `0x07`, this canonical `Record`, and its commitment.
pub const DETAILS_RECORD: &str = "0a0a6265696c756e2d657062120b502d323032362d303131371a12393133333034323137333932333738353858220c70656e616c74792e66696e652a0608808795cd063080f10438024219434f442061626f7665207065726d69742061742044573030314a0f0a066f75746c657412054457303031";
pub const DETAILS_COMMITMENT: &str = "6139efc87120580d41c0b67637f84e87353b223a49676d2165d2fd480f3c16f0";

/// The subject of vector entry `seq` in the subject index vectors (empty:
/// not indexed).
pub fn index_subject(seq: u64) -> &'static [u8] {
    match seq {
        0 | 2 | 4 => b"A",
        1 | 5 => b"B",
        3 => b"platform",
        _ => b"",
    }
}

pub const INDEX_KEY_A: &str = "6ae2bf24955f500971a227ee42037c7bcea5b99425d557743ec2e287eb30c277";
/// `A`'s value is `(3, INDEX_SEQS_A)`.
pub const INDEX_SEQS_A: &str = "bf9071f251054d67839b136e367f051c24ba927984c1886cc3592daf6764b22d";
pub const INDEX_LEAF_A: &str = "3a9aa3f52c0c18d3ba68c313fd5b1224f69a43163813c68e7bd761371d84badc";
/// The root over the entries below seq 7 (all seven).
pub const INDEX_ROOT_7: &str = "e5a024c9c1986109dfadcb06df7480aa3f7d5ed69c9834400ad3ddc2dd65f257";
pub const INDEX_PAYLOAD_7: &str =
    "ecocode/index/v1\nsize 7\nsubjects 3\nroot 5aAkycGYYQnfrcsG33SAqj99XtacmDRACtPdwt1l8lc=\n";
/// `A`'s membership proof (its leaf is at depth 2).
pub const INDEX_PROOF_A: [&str; 2] = [
    "b9c56062393f82fe34124fda80ee1054e92cb22e70796514f3e09985b64fd9f6",
    "deae83c7d2ed6fdda6e993746199aa850ccedf4d9bfdaf0d3753bb2a47264e95",
];
/// `C` (no entries) shares `A`'s path: the same siblings, ending at `A`'s
/// leaf (key `INDEX_KEY_A`, value `(3, INDEX_SEQS_A)`).
pub const INDEX_PROOF_C: [&str; 2] = INDEX_PROOF_A;

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

    #[test]
    fn details_commitment_vector_from_reference() {
        let record: Vec<u8> = (0..DETAILS_RECORD.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&DETAILS_RECORD[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(record.len(), 117);
        let commitment = crate::hash::details_commitment(&[7; crate::hash::SALT_LEN], &record);
        assert_eq!(hex(&commitment), DETAILS_COMMITMENT);
        let other_salt = crate::hash::details_commitment(&[8; crate::hash::SALT_LEN], &record);
        assert_ne!(hex(&other_salt), DETAILS_COMMITMENT);
    }

    #[test]
    fn index_vectors_from_reference() {
        use crate::index::{Builder, End, key};
        let mut builder = Builder::default();
        for seq in 0..7 {
            let leaf = entry_hash(seq, recorded_at(seq), &payload(seq));
            builder.push(seq, index_subject(seq), &leaf).unwrap();
        }
        let tree = builder.commit().clone();
        let tree = &tree;
        let a = builder.value(b"A").unwrap();
        let (_, proof_a) = tree.prove(b"A");
        let (_, proof_c) = tree.prove(b"C");
        let got = format!(
            "key(A) {}\nseqs(A) {}\nleaf(A) {}\nroot {}\npayload {:?}\nproof A {:?} {:?}\nproof C {:?} {:?}",
            hex(&key(b"A")),
            hex(&a.seqs),
            hex(&a.leaf_hash(&key(b"A"))),
            hex(&tree.root()),
            String::from_utf8(crate::index::Commitment::of(7, tree).payload()).unwrap(),
            hexes(&proof_a.siblings),
            proof_a.end,
            hexes(&proof_c.siblings),
            proof_c.end,
        );
        assert_eq!(hex(&key(b"A")), INDEX_KEY_A, "{got}");
        assert_eq!(a.count, 3);
        assert_eq!(hex(&a.seqs), INDEX_SEQS_A);
        assert_eq!(hex(&a.leaf_hash(&key(b"A"))), INDEX_LEAF_A);
        assert_eq!(hex(&tree.root()), INDEX_ROOT_7);
        assert_eq!(crate::index::Commitment::of(7, tree).payload(), INDEX_PAYLOAD_7.as_bytes());
        assert_eq!(hexes(&proof_a.siblings), INDEX_PROOF_A);
        assert_eq!(proof_a.end, End::Member);
        assert_eq!(hexes(&proof_c.siblings), INDEX_PROOF_C);
        assert_eq!(proof_c.end, End::Other { key: key(b"A"), value: a });
        proof_a.verify(&tree.root(), b"A", Some(&a)).unwrap();
        proof_c.verify(&tree.root(), b"C", None).unwrap();
    }
}
