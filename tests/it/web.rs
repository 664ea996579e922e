//! The 环保码 web page through the real router on a real socket: every page,
//! form and error class, escaping, CSRF, sessions, the public policy, and
//! role and scope rules (docs/api.md "The web page").

use ecocode_proto::v1 as pb;
use server::principals::Role;

use crate::support::*;

/// A name and a description that try to run script.
const XSS_NAME: &str = "Acme <script>alert('name')</script> & Co";
const XSS_TEXT: &str = "COD above limit <img src=x onerror=alert(1)>";

/// ACME (yellow: a fine and a suspension) and BETA (green), registered and
/// scored through gRPC; answers the seq of ACME's fine.
async fn seeded() -> (TestServer, u64) {
    let server = TestServer::start_web().await;
    let mut admin = server.admin().await;
    admin.register(ACME, XSS_NAME, "330206").await;
    admin.register(BETA, "Beta", "330206").await;
    let mut fine = record(ACME, "P-1", "penalty.fine", -10);
    fine.description = XSS_TEXT.into();
    let fine = admin.append(fine).await.unwrap();
    admin.append(record(ACME, "P-2", "enforcement.suspend", -5)).await.unwrap();
    server.publish();
    (server, fine.seq)
}

fn assert_secure_headers(r: &HttpResponse) {
    let csp = r.header("content-security-policy").expect("a CSP on every answer");
    assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"), "{csp}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("referrer-policy"), Some("same-origin"));
}

/// Signs `client` in with `token` through the sign-in form.
async fn sign_in(client: &mut WebClient, token: &str) -> HttpResponse {
    let form = client.get("/signin").await;
    assert_eq!(form.status, 200);
    let csrf = form.input("csrf").expect("the sign-in form carries a CSRF token");
    client.post("/signin", &[("csrf", &csrf), ("token", token)]).await
}

#[tokio::test]
async fn the_public_page_shows_the_code_reasons_qr_history_and_proofs_escaped() {
    let (server, fine) = seeded().await;
    let mut web = server.web();
    let page = web.get(&format!("/e/{ACME}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert_secure_headers(&page);
    let body = &page.body;
    // Escaped by the template engine, never run.
    assert!(!body.contains("<script"), "no script at all on the page");
    assert!(!body.contains("<img src=x"));
    assert!(body.contains("Acme &#60;script&#62;") || body.contains("Acme &lt;script&gt;"), "name escaped");
    assert!(body.contains("onerror=alert(1)"), "the description is shown, as text");
    // The badge: colour and words.
    assert!(body.contains(r#"class="badge yellow""#));
    assert!(body.contains("黄码") && body.contains("yellow code") && body.contains("警示"));
    // Beside it the MEE 2013 four-level colour, in words as well.
    assert!(body.contains(r#"class="mee mee-yellow""#), "the MEE badge");
    assert!(
        body.contains("黄牌 · 环保警示")
            && body.contains("MEE 2013 four-level colour: yellow: warning · YELLOW")
    );
    let green = web.get(&format!("/e/{BETA}")).await.body;
    assert!(
        green.contains(r#"class="mee mee-green""#) && green.contains("绿牌 · 环保诚信"),
        "BETA's MEE badge"
    );
    // Reasons with their dates and proofs.
    assert!(body.contains("罚款") && body.contains("penalty.fine") && body.contains("停产整治"));
    assert!(body.contains(&format!("/e/{ACME}/proof/{fine}")));
    assert!(body.contains("有效期至"));
    // QR, chart with the grade bands, verification panel.
    assert!(body.contains(r#"<svg class="qr""#));
    assert!(body.contains("已对照当前签名检查点验证"), "the page verified its own QR code");
    assert!(body.contains(r#"<svg class="chart""#) && body.contains("诚信 trustworthy ≥90"));
    assert!(body.contains("Noto Sans CJK SC"), "the chart names CJK fonts");
    assert!(body.contains("ecocode proof verify proof.json --public-key"));
    assert!(body.contains(&server.service.verifier_key()));
    // The public sees no forms.
    assert!(!body.contains("/dispute\"") && !body.contains("csrf"));
    server.stop().await;
}

#[tokio::test]
async fn json_is_the_page_data_and_its_qr_text_verifies_offline() {
    let (server, fine) = seeded().await;
    let mut web = server.web();
    let r = web.get(&format!("/e/{ACME}?format=json")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_secure_headers(&r);
    let json: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(json["uscc"], ACME);
    assert_eq!(json["name"], XSS_NAME);
    assert_eq!((json["code"].as_str(), json["grade"].as_str()), (Some("YELLOW"), Some("WARNING")));
    assert_eq!(json["points"], 66);
    assert_eq!(json["mee_level"], "YELLOW");
    assert_eq!(
        (json["mee_level_zh"].as_str(), json["mee_level_name"].as_str()),
        (Some("黄牌"), Some("环保警示"))
    );
    let reasons = json["reasons"].as_array().unwrap();
    let line = reasons.iter().find(|r| r["seq"] == fine).unwrap();
    assert_eq!(line["kind_zh"], "罚款");
    assert_eq!(line["description"], XSS_TEXT);
    assert!(line["proof"]["hashes"].is_array());
    assert!(json["history"].as_array().unwrap().len() >= 2, "the two records changed the score");

    assert_eq!(json["attestation"]["check"]["status"], "current", "the page checks its own QR code");
    let qr_text = json["attestation"]["qr_text"].as_str().unwrap();
    assert!(qr_text.starts_with(&format!("HTTP://{}/Q/", server.http.unwrap())), "{qr_text}");
    let note = tlog::attestation::note_from_qr_text(qr_text).unwrap();
    let (name, key) = tlog::note::decode_verifier_key(json["verifier_key"].as_str().unwrap()).unwrap();
    let attested = tlog::attestation::verify(&note, &name, &key).unwrap();
    assert_eq!((attested.uscc.as_str(), attested.points, attested.code.as_str()), (ACME, 66, "YELLOW"));
    server.stop().await;
}

#[tokio::test]
async fn malformed_uscc_is_400_unknown_is_404_and_neither_is_a_stack_trace() {
    let (server, _) = seeded().await;
    let mut web = server.web();
    let malformed = web.get("/e/12345").await;
    assert_eq!(malformed.status, 400);
    assert!(malformed.body.contains("uscc"), "says what is wrong: {}", malformed.body);
    assert_secure_headers(&malformed);
    let bad_check = web.get(&format!("/e/{}", &ACME[..17])).await;
    assert_eq!(bad_check.status, 400);
    let unknown = uscc("91330206MA2H12345");
    let r = web.get(&format!("/e/{unknown}")).await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("not registered"), "{}", r.body);
    assert_eq!(web.get(&format!("/e/{unknown}?format=json")).await.status, 404);
    let nowhere = web.get("/no/such/page").await;
    assert_eq!(nowhere.status, 404);
    assert_secure_headers(&nowhere);
    assert_eq!(web.get(&format!("/e/{ACME}?format=xml")).await.status, 400);
    assert_eq!(web.get(&format!("/e/{ACME}/proof/x")).await.status, 400);
    // The start page's look-up form.
    let lookup = web.get(&format!("/e?uscc={}", ACME.to_lowercase())).await;
    assert_eq!((lookup.status, lookup.header("location")), (303, Some(format!("/e/{ACME}").as_str())));
    assert_eq!(web.get("/e?uscc=nope").await.status, 400);
    for r in [&malformed, &r, &nowhere] {
        assert!(!r.body.contains("panicked") && !r.body.contains("src/"), "{}", r.body);
    }
    server.stop().await;
}

#[tokio::test]
async fn a_public_visitor_reads_no_inquiry_data_and_leaves_none() {
    let (server, _) = seeded().await;
    let mut web = server.web();
    for path in [format!("/e/{ACME}"), format!("/e/{ACME}?format=json"), format!("/e/{ACME}/feed.atom")] {
        let r = web.get(&path).await;
        assert_eq!(r.status, 200, "{path} {}", r.body);
        assert!(!r.body.contains("inquir"), "{path} shows no inquiry data");
    }
    let mut admin = server.admin().await;
    let inquiries = admin
        .scores
        .list_inquiries(pb::ListInquiriesRequest { uscc: ACME.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .inquiries;
    assert!(inquiries.is_empty(), "public page views are not inquiries: {inquiries:?}");
    // The public reaches no signed-in view.
    assert_eq!(web.get("/region").await.status, 401);
    assert_eq!(web.get("/portfolio").await.status, 401);
    assert_eq!(web.post("/portfolio", &[("usccs", ACME)]).await.status, 401);
    server.stop().await;
}

#[tokio::test]
async fn sign_in_gives_an_http_only_strict_cookie_and_never_echoes_the_token() {
    let (server, _) = seeded().await;
    let token = server.token("acme", Role::Enterprise { uscc: ACME.into() });
    let mut web = server.web();
    let r = sign_in(&mut web, &token).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some(format!("/e/{ACME}").as_str()));
    let session = r.set_cookies().into_iter().find(|c| c.starts_with("ecocode_session=")).unwrap();
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Strict"), "{session}");
    assert!(!session.contains(&token));
    let own = web.get(&format!("/e/{ACME}")).await;
    assert!(!own.body.contains(&token), "the token is never sent back");
    assert!(own.body.contains("acme (enterprise)"));

    // A wrong token: the form again, 401, no session.
    let mut stranger = server.web();
    let r = sign_in(&mut stranger, "eco_not-a-token").await;
    assert_eq!(r.status, 401);
    assert!(!r.body.contains("eco_not-a-token"));
    assert!(!stranger.cookies.contains_key("ecocode_session"));

    // Sign-in without the form's CSRF token (a login CSRF) is refused.
    let mut forger = server.web();
    let r = forger.post("/signin", &[("csrf", "guess"), ("token", &token)]).await;
    assert_eq!(r.status, 403);

    // Sign-out ends the session on the server.
    let csrf = own.input("csrf").unwrap();
    let stolen = web.cookies.clone();
    assert_eq!(web.post("/signout", &[("csrf", &csrf)]).await.status, 303);
    let mut replay = server.web();
    replay.cookies = stolen;
    assert!(!replay.get(&format!("/e/{ACME}")).await.body.contains("acme (enterprise)"));
    server.stop().await;
}

#[tokio::test]
async fn the_enterprise_files_a_rectification_and_a_dispute_through_the_pipeline() {
    let (server, fine) = seeded().await;
    let token = server.token("acme", Role::Enterprise { uscc: ACME.into() });
    let mut web = server.web();
    sign_in(&mut web, &token).await;
    let own = web.get(&format!("/e/{ACME}")).await;
    assert!(own.body.contains(&format!(r#"action="/e/{ACME}/rectification""#)), "its forms");
    let csrf = own.input("csrf").unwrap();
    let seq = fine.to_string();

    let r = web
        .post(
            &format!("/e/{ACME}/rectification"),
            &[("csrf", &csrf), ("seq", &seq), ("description", XSS_TEXT), ("evidence", "EV-2026-7")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = web.get(r.header("location").unwrap()).await;
    assert!(page.body.contains("整改待验收 rectification pending"));
    assert!(page.body.contains("EV-2026-7"), "its own filing, with the evidence");
    assert!(page.body.contains("onerror=alert(1)") && !page.body.contains("<img src=x"), "escaped");
    assert!(page.body.contains("filed as ledger entry"));

    let r = web
        .post(&format!("/e/{ACME}/dispute"), &[("csrf", &csrf), ("seq", &seq), ("description", "not ours")])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);

    // Through the same pipeline as gRPC: the score says so.
    let mut admin = server.admin().await;
    let score = admin.score(ACME).await;
    assert!(score.disputed);
    assert_eq!(score.rectification_pending, vec![fine]);

    // The public sees the flags but not the filings' texts.
    let public = server.web().get(&format!("/e/{ACME}")).await;
    assert!(public.body.contains("整改待验收") && public.body.contains("异议处理中"));
    assert!(!public.body.contains("EV-2026-7") && !public.body.contains("not ours"));

    // The pipeline's own errors come back as pages: a step on a record that
    // does not exist.
    let r = web
        .post(&format!("/e/{ACME}/dispute"), &[("csrf", &csrf), ("seq", "999"), ("description", "x")])
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("record 999 does not exist"));
    let r = web
        .post(&format!("/e/{ACME}/rectification"), &[("csrf", &csrf), ("seq", &seq), ("description", "x")])
        .await;
    assert_eq!(r.status, 400, "evidence is required");
    server.stop().await;
}

#[tokio::test]
async fn forms_without_the_sessions_csrf_token_or_from_another_site_are_refused() {
    let (server, fine) = seeded().await;
    let token = server.token("acme", Role::Enterprise { uscc: ACME.into() });
    let mut web = server.web();
    sign_in(&mut web, &token).await;
    let csrf = web.get(&format!("/e/{ACME}")).await.input("csrf").unwrap();
    let seq = fine.to_string();
    let path = format!("/e/{ACME}/dispute");
    let r = web.post(&path, &[("csrf", "forged"), ("seq", &seq), ("description", "x")]).await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("CSRF"));
    let r = web.post(&path, &[("seq", &seq), ("description", "x")]).await;
    assert_eq!(r.status, 403);
    // The right token, but sent by another site's page.
    let body = form(&[("csrf", &csrf), ("seq", &seq), ("description", "x")]);
    let r = web.request("POST", &path, &[("Origin", "http://evil.example")], Some(&body)).await;
    assert_eq!(r.status, 403);
    let r = web.request("POST", &path, &[("Sec-Fetch-Site", "cross-site")], Some(&body)).await;
    assert_eq!(r.status, 403);
    // Signed out: 401.
    let r = server.web().post(&path, &[("csrf", &csrf), ("seq", &seq), ("description", "x")]).await;
    assert_eq!(r.status, 401);
    let mut admin = server.admin().await;
    assert!(!admin.score(ACME).await.disputed, "nothing was filed");
    server.stop().await;
}

#[tokio::test]
async fn an_enterprise_cannot_file_on_another_enterprise() {
    let (server, _) = seeded().await;
    let mut admin = server.admin().await;
    let beta_record = admin.append(record(BETA, "B-1", "penalty.warning", -3)).await.unwrap();
    let token = server.token("acme", Role::Enterprise { uscc: ACME.into() });
    let mut web = server.web();
    sign_in(&mut web, &token).await;
    let csrf = web.get(&format!("/e/{ACME}")).await.input("csrf").unwrap();
    let r = web
        .post(
            &format!("/e/{BETA}/dispute"),
            &[("csrf", &csrf), ("seq", &beta_record.seq.to_string()), ("description", "not mine")],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    // Its own record number under the other enterprise's page: still refused.
    let page = web.get(&format!("/e/{BETA}")).await;
    assert!(!page.body.contains("/dispute\""), "no forms on another enterprise's page");
    assert!(!admin.score(BETA).await.disputed);
    server.stop().await;
}

#[tokio::test]
async fn a_revoked_principal_is_signed_out_at_its_next_request() {
    let (server, _) = seeded().await;
    let token = server.token("acme", Role::Enterprise { uscc: ACME.into() });
    let mut web = server.web();
    sign_in(&mut web, &token).await;
    assert!(web.get(&format!("/e/{ACME}")).await.body.contains("acme (enterprise)"));
    server.principal_store().revoke("acme").unwrap();
    server.principals.reload_if_changed().unwrap();
    let page = web.get(&format!("/e/{ACME}")).await;
    assert!(!page.body.contains("acme (enterprise)"), "revocation applies to sessions");
    server.stop().await;
}

#[tokio::test]
async fn the_regulator_lists_its_region_filters_sorts_counts_and_downloads_csv() {
    let (server, _) = seeded().await;
    let mut admin = server.admin().await;
    admin.register(&uscc("91330100MA2H00001"), "Hangzhou Elsewhere", "330100").await;
    let token = server.token("beilun", Role::Regulator { region_prefix: "330206".into() });
    let mut web = server.web();
    let r = sign_in(&mut web, &token).await;
    assert_eq!(r.header("location"), Some("/region"));
    let list = web.get("/region").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains(ACME) && list.body.contains(BETA));
    assert!(!list.body.contains("Hangzhou Elsewhere"), "outside its scope");
    assert!(list.body.contains("&lt;script&gt;") || list.body.contains("&#60;script&#62;"));
    assert!(!list.body.contains("<script"));
    let yellow = web.get("/region?code=YELLOW").await;
    assert!(yellow.body.contains(ACME) && !yellow.body.contains(&format!(">{BETA}<")));
    let good = web.get("/region?grade=INTEGRITY&sort=points").await;
    assert!(good.body.contains(BETA) && !good.body.contains(&format!(">{ACME}<")));
    assert!(
        list.body.contains("绿码 <span class=\"en\">GREEN</span>: <strong>1</strong>"),
        "counts per code"
    );
    assert_eq!(web.get("/region?code=PURPLE").await.status, 400);
    assert_eq!(web.get("/region?region=3301").await.status, 403, "another region");

    let csv = web.get("/region.csv?sort=points").await;
    assert_eq!(csv.status, 200);
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    let lines: Vec<&str> = csv.body.lines().collect();
    assert!(lines[0].ends_with("uscc,name,region_code,industry_code,code,grade,points,as_of"));
    assert_eq!(lines.len(), 3);
    assert!(lines[1].starts_with(&format!("\"{ACME}\"")), "sorted by points: {lines:?}");

    // An enterprise has no regional list.
    let acme = server.token("acme", Role::Enterprise { uscc: ACME.into() });
    let mut own = server.web();
    sign_in(&mut own, &acme).await;
    assert_eq!(own.get("/region").await.status, 403);
    server.stop().await;
}

#[tokio::test]
async fn the_lenders_portfolio_follows_batch_get_scores_and_is_an_inquiry() {
    let (server, _) = seeded().await;
    // A bank reads under the enterprise's grant (--lender-access granted).
    for uscc in [ACME, BETA] {
        grant(&mut server.admin().await, uscc, "bank-a").await;
    }
    let token = server.token("bank-a", Role::Lender);
    let mut web = server.web();
    assert_eq!(sign_in(&mut web, &token).await.header("location"), Some("/portfolio"));
    let csrf = web.get("/portfolio").await.input("csrf").unwrap();
    let unknown = uscc("91330206MA2H12345");
    let list = format!("{ACME}\n{BETA}, {unknown}\nnot-a-uscc");
    let r = web.post("/portfolio", &[("csrf", &csrf), ("usccs", &list), ("purpose", "LA-7")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(ACME) && r.body.contains(BETA));
    assert!(r.body.contains("未登记") && r.body.contains(&unknown));
    assert!(r.body.contains("格式错误") && r.body.contains("not-a-uscc"));
    let csv = web.post("/portfolio", &[("csrf", &csrf), ("usccs", &list), ("format", "csv")]).await;
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(csv.body.lines().count(), 3);
    assert_eq!(web.post("/portfolio", &[("csrf", "x"), ("usccs", ACME)]).await.status, 403);

    // The page's own form is multipart, with an uploaded file of USCCs.
    let body = format!(
        "--b0und\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n\
         --b0und\r\nContent-Disposition: form-data; name=\"usccs\"\r\n\r\n\r\n\
         --b0und\r\nContent-Disposition: form-data; name=\"file\"; filename=\"book.txt\"\r\n\
         Content-Type: text/plain\r\n\r\n{BETA}\n{unknown}\n\r\n\
         --b0und\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nLA-8\r\n--b0und--\r\n"
    );
    let origin = format!("http://{}", server.http.unwrap());
    let r = web
        .request(
            "POST",
            "/portfolio",
            &[("Origin", &origin), ("Content-Type", "multipart/form-data; boundary=b0und")],
            Some(&body),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(BETA) && r.body.contains(&unknown) && !r.body.contains(&format!(">{ACME}<")));

    let mut admin = server.admin().await;
    let inquiries = admin
        .scores
        .list_inquiries(pb::ListInquiriesRequest { uscc: ACME.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .inquiries;
    assert!(inquiries.iter().any(|i| i.principal == "bank-a" && i.purpose == "LA-7"), "{inquiries:?}");
    server.stop().await;
}

#[tokio::test]
async fn the_atom_feed_lists_code_changes() {
    let (server, _) = seeded().await;
    let r = server.web().get(&format!("/e/{ACME}/feed.atom")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/atom+xml; charset=utf-8"));
    assert!(r.body.starts_with("<?xml"));
    assert!(r.body.contains("<entry>") && r.body.contains("YELLOW"));
    assert!(!r.body.contains("<script"), "escaped in XML too");
    server.stop().await;
}

#[tokio::test]
async fn the_proof_bundle_and_attestation_downloads_verify_offline() {
    let (server, fine) = seeded().await;
    let mut web = server.web();
    let r = web.get(&format!("/e/{ACME}/proof/{fine}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("content-disposition").unwrap().starts_with("attachment"));
    let bundle: tlog::bundle::Bundle = serde_json::from_str(&r.body).unwrap();
    let (name, key) = tlog::note::decode_verifier_key(&server.service.verifier_key()).unwrap();
    let verified = tlog::bundle::verify(&bundle, &name, &key).unwrap();
    assert!(matches!(verified, tlog::bundle::Verified::Inclusion { seq, .. } if seq == fine));
    // The registration (seq 0) is not a reason: not public as an entry.
    assert_eq!(web.get(&format!("/e/{ACME}/proof/0")).await.status, 404);
    assert_eq!(web.get(&format!("/e/{BETA}/proof/{fine}")).await.status, 404, "not BETA's record");

    let note = web.get(&format!("/e/{ACME}/attestation.txt")).await;
    assert_eq!(note.status, 200);
    assert_eq!(tlog::attestation::verify(&note.body, &name, &key).unwrap().uscc, ACME);
    server.stop().await;
}

#[tokio::test]
async fn a_scanned_attestation_is_current_then_superseded_and_a_forged_one_invalid() {
    let (server, _) = seeded().await;
    let mut web = server.web();
    let json: serde_json::Value =
        serde_json::from_str(&web.get(&format!("/e/{ACME}?format=json")).await.body).unwrap();
    let qr_text = json["attestation"]["qr_text"].as_str().unwrap().to_owned();
    // Scanning the compact QR opens /Q/<digits>, which sends the browser
    // on to the page of the enterprise it names.
    let digits = qr_text.split_once("/Q/").unwrap().1.to_owned();
    let r = web.get(&format!("/Q/{digits}")).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let scanned = format!("?att={digits}");
    assert_eq!(r.header("location"), Some(format!("/e/{ACME}{scanned}").as_str()));
    let page = web.get(&format!("/e/{ACME}{scanned}")).await;
    assert!(page.body.contains(r#"class="card scanned current""#), "{}", page.body);
    let check = |body: &str| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(body).unwrap()["scanned"].clone()
    };
    assert_eq!(check(&web.get(&format!("/e/{ACME}{scanned}&format=json")).await.body)["status"], "current");

    // The code changes: the printed sticker is superseded, never current.
    let mut admin = server.admin().await;
    admin.append(record(ACME, "V-1", "veto.data_fraud", -1)).await.unwrap();
    server.publish();
    let page = web.get(&format!("/e/{ACME}{scanned}")).await;
    assert!(page.body.contains(r#"class="card scanned superseded""#));
    assert!(page.body.contains("红码"), "with the current code");
    let superseded = check(&web.get(&format!("/e/{ACME}{scanned}&format=json")).await.body);
    assert_eq!(superseded["status"], "superseded");
    assert_eq!(superseded["attested"]["code"], "YELLOW");

    // Altered points: the signature fails.
    let note = tlog::attestation::note_from_qr_text(&qr_text).unwrap().replace("points 66", "points 96");
    let forged = tlog::attestation::qr_text("http://x/e/ACME", &note);
    let forged = forged.split_once('?').unwrap().1;
    let r = web.get(&format!("/e/{ACME}?{forged}&format=json")).await;
    assert_eq!(check(&r.body)["status"], "invalid");
    // Another enterprise's valid attestation on this page: invalid here.
    let beta: serde_json::Value =
        serde_json::from_str(&web.get(&format!("/e/{BETA}?format=json")).await.body).unwrap();
    let beta_att =
        format!("att={}", beta["attestation"]["qr_text"].as_str().unwrap().split_once("/Q/").unwrap().1);
    assert_eq!(check(&web.get(&format!("/e/{ACME}?{beta_att}&format=json")).await.body)["status"], "invalid");
    assert_eq!(
        check(&web.get(&format!("/e/{ACME}?att=garbage&format=json")).await.body)["status"],
        "invalid"
    );
    // The full form, as stickers printed before the compact one carry it,
    // is still read.
    let full = tlog::attestation::qr_text(
        "http://x/e/ACME",
        &tlog::attestation::note_from_qr_text(&qr_text).unwrap(),
    );
    let full = full.split_once('?').unwrap().1;
    assert_eq!(check(&web.get(&format!("/e/{ACME}?{full}&format=json")).await.body)["status"], "superseded");
    // Digits that are no compact attestation: a 400 naming it, not a page.
    let r = web.get(&format!("/Q/{}", &digits[..digits.len() - 1])).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("not an attestation"), "{}", r.body);
    server.stop().await;
}

#[tokio::test]
async fn requests_past_the_rate_limit_get_429_and_huge_bodies_413() {
    let server = TestServer::start_with(|c| {
        c.http_listen = Some("127.0.0.1:0".parse().unwrap());
        c.web.requests_per_minute = 3;
        c.web.max_body_bytes = 1024;
    })
    .await;
    let mut web = server.web();
    let big = "x".repeat(4096);
    let r = web.post("/signin", &[("csrf", "x"), ("token", &big)]).await;
    assert_eq!(r.status, 413);
    for _ in 0..2 {
        assert_eq!(web.get("/").await.status, 200);
    }
    let r = web.get("/").await;
    assert_eq!(r.status, 429);
    assert_secure_headers(&r);
    server.stop().await;
}

/// Regression: `axum::serve` sets no header-read timeout, so a client that
/// trickles a request's head held its connection forever (slowloris).
#[tokio::test]
async fn a_connection_that_never_finishes_its_request_head_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start_with(|c| {
        c.http_listen = Some("127.0.0.1:0".parse().unwrap());
        c.web.request_timeout = std::time::Duration::from_millis(200);
    })
    .await;
    let mut slow = tokio::net::TcpStream::connect(server.http.unwrap()).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(30), slow.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the server closes the connection after the header-read timeout");
    // Others are served meanwhile and after.
    assert_eq!(server.web().get("/").await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn the_start_page_and_stylesheet_are_served_from_the_binary() {
    let server = TestServer::start_web().await;
    let mut web = server.web();
    let index = web.get("/").await;
    assert_eq!(index.status, 200);
    assert!(index.body.contains(r#"action="/e""#) && index.body.contains("统一社会信用代码"));
    let css = web.get("/static/style.css").await;
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert!(css.body.contains(".badge"));
    server.stop().await;
}

/// ACME with a dispute and a rectification filed by the enterprise, their
/// texts marked; answers (fine seq, dispute seq, rectification seq).
async fn with_filings(server: &TestServer, fine: u64) -> (u64, u64) {
    let token = server.token("acme", Role::Enterprise { uscc: ACME.into() });
    let mut acme = server.client(&token).await;
    let mut dispute = step(ACME, "D-1", "dispute.opened", 0, fine);
    dispute.source = "acme".into();
    dispute.description = "DISPUTE-TEXT the fine was for another site".into();
    let dispute = acme.append(dispute).await.unwrap().seq;
    let mut rectification = step(ACME, "R-1", "rectification.submitted", 0, fine);
    rectification.source = "acme".into();
    rectification.description = "RECTIFICATION-TEXT new filter".into();
    rectification.attributes.insert("evidence".into(), "EVIDENCE-REF-7".into());
    let rectification = acme.append(rectification).await.unwrap().seq;
    (dispute, rectification)
}

/// What broke: the page hid dispute texts and evidence from lenders while
/// `Ledger.ListEntries` and `GetEntry` handed them out.
#[tokio::test]
async fn a_lender_reads_the_same_record_fields_on_the_page_and_through_list_entries() {
    let (server, fine) = seeded().await;
    let (dispute, rectification) = with_filings(&server, fine).await;
    let secrets = ["DISPUTE-TEXT", "RECTIFICATION-TEXT", "EVIDENCE-REF-7"];
    // A bank reads under the enterprise's grant (--lender-access granted).
    grant(&mut server.admin().await, ACME, "bank-a").await;
    let token = server.token("bank-a", Role::Lender);
    let mut web = server.web();
    sign_in(&mut web, &token).await;
    let page = web.get(&format!("/e/{ACME}")).await;
    let json = web.get(&format!("/e/{ACME}?format=json")).await;
    assert_eq!((page.status, json.status), (200, 200));
    for secret in secrets {
        assert!(!page.body.contains(secret) && !json.body.contains(secret), "{secret} on the lender's page");
    }
    let json: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    let on_page: std::collections::BTreeMap<u64, String> = json["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| Some((r["seq"].as_u64()?, r["description"].as_str()?.to_owned())))
        .collect();
    assert_eq!(on_page.len(), 2, "the fine and the suspension: {on_page:?}");

    // The same lender through gRPC: the record entries are exactly the
    // page's, with the page's texts; the filings are not there at all.
    let mut bank = server.client(&token).await;
    let mut stream = bank.ledger.list_entries(pb::ListEntriesRequest::default()).await.unwrap().into_inner();
    let mut records = std::collections::BTreeMap::new();
    while let Some(entry) = stream.message().await.unwrap() {
        let text = String::from_utf8_lossy(&[entry.payload.as_slice(), &entry.details].concat()).into_owned();
        assert!(secrets.iter().all(|s| !text.contains(s)), "entry {} gives {text:?}", entry.seq);
        if !tlog::index::is_index_payload(&entry.payload)
            && let Some(r) = record_in(entry.seq, &entry.payload, &entry.details)
        {
            records.insert(entry.seq, r.description);
        }
        // Every entry given is whole: its proof verifies from its payload.
        let leaf = ledger::hash::entry_hash(
            entry.seq,
            entry.recorded_at.map_or(0, |t| t.seconds * 1_000_000_000 + i64::from(t.nanos)),
            &entry.payload,
        );
        assert_eq!(leaf.as_slice(), entry.entry_hash.as_slice(), "entry {} is whole", entry.seq);
    }
    assert_eq!(records, on_page, "the same records with the same texts");
    for seq in [dispute, rectification] {
        let err = bank.ledger.get_entry(pb::GetEntryRequest { seq }).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "entry {seq}");
        assert_eq!(web.get(&format!("/e/{ACME}/proof/{seq}")).await.status, 403, "no proof bundle of {seq}");
    }
    bank.ledger.get_entry(pb::GetEntryRequest { seq: fine }).await.unwrap();
    // The enterprise and the admin still read the filings.
    let acme = server.token("acme-reader", Role::Enterprise { uscc: ACME.into() });
    server.client(&acme).await.ledger.get_entry(pb::GetEntryRequest { seq: dispute }).await.unwrap();
    server.admin().await.ledger.get_entry(pb::GetEntryRequest { seq: rectification }).await.unwrap();
    server.stop().await;
}

/// What broke: a lender signed in to the page read every reason and
/// attestation without an inquiry being recorded.
#[tokio::test]
async fn a_signed_in_lenders_page_read_is_recorded_as_an_inquiry() {
    let (server, _) = seeded().await;
    // A bank reads under the enterprise's grant (--lender-access granted).
    grant(&mut server.admin().await, ACME, "bank-a").await;
    let token = server.token("bank-a", Role::Lender);
    let mut web = server.web();
    sign_in(&mut web, &token).await;
    assert_eq!(web.get(&format!("/e/{ACME}?purpose=LA-9")).await.status, 200);
    assert_eq!(web.get(&format!("/e/{ACME}?format=json")).await.status, 200);
    // A regulator of another region reads the page as the public does.
    let elsewhere = server.token("sh-epb", Role::Regulator { region_prefix: "31".into() });
    let mut sh = server.web();
    sign_in(&mut sh, &elsewhere).await;
    assert_eq!(sh.get(&format!("/e/{ACME}")).await.status, 200);
    // And one in scope is recorded, as its gRPC reads are.
    let here = server.token("nb-epb", Role::Regulator { region_prefix: "3302".into() });
    let mut nb = server.web();
    sign_in(&mut nb, &here).await;
    assert_eq!(nb.get(&format!("/e/{ACME}?purpose=inspection%20plan")).await.status, 200);
    // Anonymous readers leave none.
    assert_eq!(server.web().get(&format!("/e/{ACME}")).await.status, 200);

    let mut admin = server.admin().await;
    let inquiries = admin
        .scores
        .list_inquiries(pb::ListInquiriesRequest { uscc: ACME.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .inquiries;
    let seen: Vec<(&str, &str, &str)> =
        inquiries.iter().map(|i| (i.principal.as_str(), i.method.as_str(), i.purpose.as_str())).collect();
    assert_eq!(
        seen,
        vec![
            ("nb-epb", "GetScore", "inspection plan"),
            ("bank-a", "GetScore", "web page"),
            ("bank-a", "GetScore", "LA-9"),
        ],
        "one inquiry per page read, newest first"
    );
    server.stop().await;
}

/// What broke: with 20 000 records over 700 days the page, its JSON, its
/// feed and the QR check answered 400 ("32000 change points, more than
/// 10000").
#[tokio::test]
async fn a_heavy_enterprise_has_a_page() {
    let server = TestServer::start_web().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Heavy Co", "330206").await;
    let who = server::principals::Principal { name: "ops".into(), role: Role::Admin };
    let at = |day: i64, hour: i64| days(day).plus_nanos(hour * 3_600_000_000_000);
    let record = |id: String, kind: &str, when: scoring::Timestamp, amount: i64, refers_to: Option<u64>| {
        scoring::Record::new(scoring::RecordFields {
            source: "device-log",
            source_record_id: &id,
            uscc: ACME,
            kind,
            occurred_at: Some(when),
            amount_yuan: amount,
            refers_to: refers_to.map(scoring::Seq),
            description: "",
            attributes: Default::default(),
        })
        .unwrap()
    };
    // One device, ten pollutants, offline and over its limits for 700
    // days: the capped kinds hold the score at 80 (GREEN) throughout.
    let background = ["monitoring.missing_day", "monitoring.insufficient_day", "exceedance.daily"];
    let mut all: Vec<scoring::Record> = (0..20_000i64)
        .map(|i| {
            let (day, slot) = (-700 + i / 29, i % 29);
            record(format!("bg-{i}"), background[(i % 3) as usize], at(day, slot % 24), 0, None)
        })
        .collect();
    // The colour changes: two fines (yellow), a veto (red) that is voided.
    all.push(record("fine-a".into(), "penalty.fine", days(-600), 80_000, None));
    all.push(record("fine-b".into(), "penalty.fine", days(-400), 80_000, None));
    all.push(record("veto".into(), "veto.crime", days(-200), 0, None));
    let mut last = 0;
    for chunk in all.chunks(2_000) {
        for result in server.service.append_records(&who, chunk.to_vec()).await {
            last = result.unwrap().seq;
        }
    }
    let veto = last;
    let mut void = record("void".into(), "record.voided", days(-150), 0, Some(veto));
    void.attributes.insert("reason".into(), "recorded against the wrong enterprise".into());
    server.service.append_record(&who, void).await.unwrap();
    server.publish();
    // Fine A ends at -235 (still yellow with fine B), fine B at -35.
    let expected =
        [(days(-600), "YELLOW"), (days(-200), "RED"), (days(-150), "YELLOW"), (days(-35), "GREEN")];

    let mut web = server.web();
    let started = std::time::Instant::now();
    let page = web.get(&format!("/e/{ACME}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let json = web.get(&format!("/e/{ACME}?format=json")).await;
    assert_eq!(json.status, 200, "{}", json.body);
    let feed = web.get(&format!("/e/{ACME}/feed.atom")).await;
    assert_eq!(feed.status, 200, "{}", feed.body);
    let json: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    let qr_text = json["attestation"]["qr_text"].as_str().unwrap();
    // The compact form's digits, as `/Q/<digits>` redirects to `?att=<digits>`.
    let att = qr_text.rsplit_once("/Q/").expect("the page's QR is the compact form").1;
    let check = web.get(&format!("/e/{ACME}?format=json&att={att}")).await;
    assert_eq!(check.status, 200, "{}", check.body);
    let check: serde_json::Value = serde_json::from_str(&check.body).unwrap();
    assert_eq!(check["scanned"]["status"], "current");
    eprintln!("heavy enterprise: page, JSON, feed and QR check in {:?}", started.elapsed());

    let history = json["history"].as_array().unwrap();
    assert!(history.len() <= server::views::MAX_PAGE_HISTORY, "{} points", history.len());
    assert_eq!(json["history_complete"], true);
    let changes: Vec<(String, &str)> = history
        .windows(2)
        .filter(|w| w[0]["code"] != w[1]["code"])
        .map(|w| (w[1]["as_of"].as_str().unwrap().to_owned(), w[1]["code"].as_str().unwrap()))
        .collect();
    let expected: Vec<(String, &str)> = expected.iter().map(|(t, c)| (t.to_string(), *c)).collect();
    assert_eq!(changes, expected, "every colour change, at its exact instant");
    assert_eq!(history[0]["code"], "GREEN");
    assert_eq!((json["code"].as_str(), json["points"].as_i64()), (Some("GREEN"), Some(80)));
    let reasons = json["reasons"].as_array().unwrap().len();
    assert!(reasons <= server::views::MAX_PAGE_REASONS, "{reasons} reasons listed");
    assert!(json["reasons_total"].as_u64().unwrap() > reasons as u64, "the page says how many more");
    assert_eq!(feed.body.matches("<entry>").count(), 5, "the start and four changes: {}", feed.body);
    server.stop().await;
}

/// What broke: an anonymous `GET /e/{USCC}` signed and stored a checkpoint
/// whenever the head had moved past the latest one, so a crawler caused
/// disk writes and a full disk broke reads.
#[tokio::test]
async fn anonymous_page_views_never_sign_store_or_write() {
    use server::principals::Principal;
    let (server, fine) = {
        let server = TestServer::start_with(|c| {
            c.http_listen = Some("127.0.0.1:0".parse().unwrap());
            // No timer signs during the burst: any new checkpoint is a view's.
            c.ledger.checkpoint_interval = std::time::Duration::from_secs(24 * 3600);
        })
        .await;
        let mut admin = server.admin().await;
        admin.register(ACME, "Acme", "330206").await;
        let fine = admin.append(record(ACME, "P-1", "penalty.fine", -10)).await.unwrap().seq;
        server.publish();
        (server, fine)
    };
    let mut web = server.web();
    let json: serde_json::Value =
        serde_json::from_str(&web.get(&format!("/e/{ACME}?format=json")).await.body).unwrap();
    let digits = json["attestation"]["qr_text"].as_str().unwrap().split_once("/Q/").unwrap().1.to_owned();

    // The head moves past the latest checkpoint, as a gateway's or a
    // filing's append leaves it until the timer signs: no appends after.
    let source = Principal { name: "beilun-epb".into(), role: Role::Source { source: "beilun-epb".into() } };
    let late = scoring::Record::new(scoring::RecordFields {
        source: "beilun-epb",
        source_record_id: "P-2",
        uscc: ACME,
        kind: "enforcement.suspend",
        occurred_at: Some(server.service.clock().now()),
        amount_yuan: 0,
        refers_to: None,
        description: "late",
        attributes: Default::default(),
    })
    .unwrap();
    server.service.append_record(&source, late).await.unwrap();
    let public = Principal::public();
    let checkpoint = server.service.checkpoint(&public).unwrap();
    assert!(checkpoint.tree_size < server.ledger.head().size, "the head is past the checkpoint");
    let (flushes, files) = (server.ledger.flush_count(), files_of(server.data_dir()));

    for _ in 0..20 {
        for path in [
            format!("/e/{ACME}"),
            format!("/e/{ACME}?format=json"),
            format!("/e/{ACME}/feed.atom"),
            format!("/e/{ACME}/attestation.txt"),
            format!("/e/{ACME}/proof/{fine}"),
            format!("/e/{ACME}?att={digits}"),
        ] {
            let r = web.get(&path).await;
            assert_eq!(r.status, 200, "{path}: {}", r.body);
        }
    }
    assert_eq!(server.service.checkpoint(&public).unwrap().note, checkpoint.note, "no checkpoint signed");
    assert_eq!(server.ledger.flush_count(), flushes, "no ledger commit");
    assert_eq!(files_of(server.data_dir()), files, "nothing written to the data directory");
    // The page shows the published checkpoint's tree, not the head's.
    let json: serde_json::Value =
        serde_json::from_str(&web.get(&format!("/e/{ACME}?format=json")).await.body).unwrap();
    assert_eq!(json["checkpoint"]["tree_size"], checkpoint.tree_size);
    assert_eq!(json["attestation"]["check"]["status"], "current");
    server.stop().await;
}

/// Every file under `dir` with its size, but sled's own `db` and `conf`:
/// sled's background flusher may still write there what was committed
/// before (the ledger's commits are counted by `flush_count` instead).
fn files_of(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let meta = e.metadata().unwrap();
        let name = e.file_name();
        if meta.is_dir() {
            out.extend(files_of(&e.path()));
        } else if name != "db" && name != "conf" {
            out.push((e.path(), meta.len()));
        }
    }
    out.sort();
    out
}
