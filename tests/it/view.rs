//! The materialized view of current scores equals a full recomputation
//! from the ledger, whatever happened before the read: appends to the same
//! and to other enterprises, workflow steps, time passing records' windows
//! (a manual clock), reads at past instants and restarts.

use ecocode_proto::v1 as pb;
use scoring::Timestamp;
use server::Clock;

use crate::support::*;
use tests::Rng;

const KINDS: [&str; 6] = [
    "penalty.warning",
    "penalty.fine",
    "exceedance.daily",
    "complaint.verified",
    "incident.general",
    "enforcement.seal",
];
const STEPS: [&str; 4] =
    ["dispute.opened", "dispute.resolved", "rectification.submitted", "rectification.verified"];

/// Every enterprise's served score (through the view) equals the score
/// recomputed from its entries, and so does what `GetScore` answers.
async fn check_all(server: &TestServer, usccs: &[String], at: Timestamp, context: &str) {
    for uscc in usccs {
        let (served, served_next) = server.service.current_score(&auditor(), uscc, at).unwrap();
        let (truth, truth_next) = server.service.recompute(&auditor(), uscc, at).unwrap();
        assert_eq!(served.evaluation, truth.evaluation, "{context}: {uscc} at {at}");
        assert_eq!((served.tree_size, served.root), (truth.tree_size, truth.root), "{context}: {uscc}");
        assert_eq!(served_next, truth_next, "{context}: {uscc}: next change");
    }
    let mut admin = server.admin().await;
    for uscc in usccs {
        let score = admin.score(uscc).await;
        let (truth, _) = server.service.recompute(&auditor(), uscc, server.clock.now()).unwrap();
        assert_eq!(score.points, truth.evaluation.points, "{context}: GetScore {uscc}");
        assert_eq!(score.reasons.len(), truth.evaluation.reasons.len(), "{context}: GetScore {uscc}");
    }
}

async fn run(seed: u64) {
    let mut rng = Rng(seed);
    let mut server = TestServer::start().await;
    let usccs: Vec<String> = (0..4).map(|i| uscc(&format!("9133020673923785{i}"))).collect();
    let mut admin = server.admin().await;
    for (i, u) in usccs.iter().enumerate() {
        admin.register(u, &format!("enterprise {i}"), "330206").await;
    }
    let mut now = T0;
    // (uscc, seq) of every record appended, for workflow steps to name.
    let mut appended: Vec<(String, u64)> = Vec::new();
    for i in 0..60 {
        match rng.below(10) {
            0..=3 => {
                let u = rng.pick(&usccs).clone();
                let kind = *rng.pick(&KINDS);
                let day = (now.unix_nanos() - T0.unix_nanos()) / 86_400_000_000_000 - rng.below(400) as i64;
                let record = pb::Record {
                    amount_yuan: rng.below(300_000) as i64,
                    ..record(&u, &format!("r{seed}-{i}"), kind, day)
                };
                // Records the model refuses (too old, say) change nothing.
                if let Ok(receipt) = admin.append(record).await {
                    appended.push((u, receipt.seq));
                }
            }
            4 if !appended.is_empty() => {
                let (u, seq) = rng.pick(&appended).clone();
                let kind = *rng.pick(&STEPS);
                let day = (now.unix_nanos() - T0.unix_nanos()) / 86_400_000_000_000;
                let mut step = step(&u, &format!("s{seed}-{i}"), kind, day, seq);
                if kind == "dispute.resolved" && rng.below(2) == 0 {
                    step.attributes.insert("outcome".into(), "upheld".into());
                }
                // Steps the model refuses (nothing to resolve, say) are fine:
                // the view must hold either way.
                let _ = admin.append(step).await;
            }
            5 | 6 => {
                now = now.plus_days(rng.below(120) as i64);
                server.clock.set(now);
            }
            7 => {
                // A read at a past instant must not disturb the current one.
                let past = now.plus_days(-(rng.below(500) as i64));
                check_all(&server, &usccs, past, &format!("seed {seed} step {i}, past read")).await;
            }
            8 if rng.below(3) == 0 => {
                let dir = server.stop().await;
                server = TestServer::start_in(dir).await;
                server.clock.set(now);
                admin = server.admin().await;
            }
            _ => {}
        }
        check_all(&server, &usccs, now, &format!("seed {seed} step {i}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_equals_a_recomputation_through_appends_time_and_restarts() {
    for seed in 1..=4 {
        run(seed).await;
    }
}

/// Reads racing appends never see an evaluation that lacks an entry inside
/// the prefix they report: the view serves only what a recomputation over
/// that prefix would give.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_racing_appends_report_consistent_prefixes() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330421").await;
    let reader = {
        let service = server.service.clone();
        tokio::task::spawn_blocking(move || {
            // Until the last append is visible: reads race every append.
            let mut size = 0;
            while size < 202 {
                let (view, _) = service.current_score(&auditor(), ACME, T0).unwrap();
                let counted = view.evaluation.reasons.iter().filter(|r| r.seq.0 > 1).count() as u64;
                // The ledger is the model entry (seq 0), the registration
                // (seq 1) and then only this enterprise's warnings, all
                // active and capped by no rule: every entry below the
                // reported prefix but the first two is counted, and none at
                // or beyond it.
                assert_eq!(counted, view.tree_size.saturating_sub(2), "prefix {}", view.tree_size);
                size = view.tree_size;
            }
        })
    };
    for i in 0..200 {
        admin.append(record(ACME, &format!("w{i}"), "penalty.warning", 0)).await.unwrap();
    }
    reader.await.unwrap();
}

/// The admin that audits the view against recomputation.
fn auditor() -> server::principals::Principal {
    server::principals::Principal { name: "auditor".into(), role: server::principals::Role::Admin }
}
