//! Score attestations: a score as a signed note a lender can file with a
//! loan and anyone can check offline against the service's public key.
//!
//! Body format (each line ends in `\n`; the note signature covers all):
//! ```text
//! <origin>/score
//! uscc 91330421739237858X
//! points 87
//! grade GOOD
//! code GREEN
//! veto false
//! disputed false
//! model ecocode-2026.1
//! as_of 2026-11-26T09:00:00Z
//! tree_size 1234
//! root <base64 root hash at tree_size>
//! ```

use base64::Engine;

use crate::convert::to_proto;
use crate::state::ScoreView;

pub fn body(origin: &str, view: &ScoreView) -> String {
    let e = &view.evaluation;
    format!(
        "{origin}/score\nuscc {}\npoints {}\ngrade {}\ncode {}\nveto {}\ndisputed {}\nmodel {}\nas_of {}\ntree_size {}\nroot {}\n",
        view.enterprise.uscc,
        e.points,
        to_proto::grade(e.grade).as_str_name(),
        to_proto::code(e.code).as_str_name(),
        e.veto,
        e.disputed,
        e.model_version,
        e.as_of,
        view.tree_size,
        base64::engine::general_purpose::STANDARD.encode(view.root),
    )
}

/// The fields of a verified attestation body, for display.
pub fn fields(body: &str) -> Vec<(String, String)> {
    body.lines()
        .skip(1)
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}
