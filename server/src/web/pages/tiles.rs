//! The log as C2SP tlog-tiles serves it, for mirrors and monitors:
//! `/checkpoint` (the published checkpoint note), `/tile/<L>/<N>[.p/<W>]`
//! (Merkle tree hashes, public) and `/tile/entries/<N>[.p/<W>]` (entry
//! bundles, to principals who may read every entry, with
//! `Authorization: Bearer <token>`). Answers are plain text or bytes,
//! errors plain text: the readers are programs.

use super::*;

/// Full tiles never change: cache them for a year.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Partial tiles are replaced by their full tile; the checkpoint moves.
const SHORT_LIVED: &str = "public, max-age=5";

/// `GET /checkpoint`: the latest published checkpoint (the witnessed one
/// under `--witness-policy`).
pub async fn checkpoint_note(State(st): State<WebState>) -> Response {
    match st.service.public_checkpoint() {
        Ok(checkpoint) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, SHORT_LIVED)],
            checkpoint.note,
        )
            .into_response(),
        Err(e) => plain_error(e.http_status(), &e.public_message()),
    }
}

/// `GET /tile/...`: a tile or an entry bundle.
pub async fn tile(State(st): State<WebState>, Path(rest): Path<String>, headers: HeaderMap) -> Response {
    let tile = match tlog::tiles::Tile::parse(&rest) {
        Ok(tile) => tile,
        Err(e) => return plain_error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    // Hash tiles are public; entry bundles need the caller's token.
    let who = if tile.kind == tlog::tiles::TileKind::Entries {
        match bearer(&st, &headers) {
            Ok(who) => Some(who),
            Err(e) => return plain_error(e.http_status(), &e.public_message()),
        }
    } else {
        None
    };
    match st.service.tile(who.as_ref(), tile).await {
        Ok(Some(bytes)) => {
            let cache = if tile.width.is_none() { IMMUTABLE } else { SHORT_LIVED };
            ([(header::CONTENT_TYPE, "application/octet-stream"), (header::CACHE_CONTROL, cache)], bytes)
                .into_response()
        }
        Ok(None) => plain_error(
            StatusCode::NOT_FOUND,
            &format!("{} is not in the current tree; fetch /checkpoint for its size", tile.path()),
        ),
        Err(e) => plain_error(e.http_status(), &e.public_message()),
    }
}

/// The principal of `Authorization: Bearer <token>` (the gRPC tokens).
fn bearer(st: &WebState, headers: &HeaderMap) -> Result<Principal> {
    let missing = || {
        Error::Unauthenticated(
            "entry bundles need `Authorization: Bearer <token>` of an admin or a regulator without a scope"
                .into(),
        )
    };
    let value = headers.get(header::AUTHORIZATION).ok_or_else(missing)?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .ok_or_else(missing)?;
    st.principals.authenticate(token.trim()).ok_or_else(|| {
        Error::Unauthenticated(
            "unknown token, or its principal was revoked; create one with `ecocode principal add`".into(),
        )
    })
}

fn plain_error(status: StatusCode, message: &str) -> Response {
    let mut response =
        (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{message}\n"))
            .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}
