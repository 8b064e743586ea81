//! The HTTP side: `POST /v1/talk`, `GET /v1/health`, and WebSocket upgrades on any path.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, Extension, Request, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use talkbell_core::protocol::UserId;
use tokio::sync::OwnedSemaphorePermit;

use crate::hub::{DeliverError, Shared};
use crate::users::User;
use crate::ws::{serve_connection, WS_READ_LIMIT};
use talkbell_core::untrusted::untrusted;

/// Read buffer per WebSocket connection.
const WS_READ_BUFFER: usize = 4 * 1024;

/// One place in the total connection cap, shared by a connection and its upgrade (the
/// listener, `serve.rs`, takes it for each connection it accepts).
#[derive(Clone)]
pub(crate) struct Slot {
    _permit: Arc<OwnedSemaphorePermit>,
}

impl Slot {
    pub fn new(permit: OwnedSemaphorePermit) -> Self {
        Slot { _permit: Arc::new(permit) }
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/talk", post(post_talk).fallback(fallback))
        .route("/v1/health", get(health).fallback(fallback))
        .fallback(fallback)
        .with_state(shared)
}

fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    json_response(status, json!({"error": message.into()}))
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut resp = (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

async fn health() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], r#"{"ok":true}"#).into_response()
}

/// Any request no route takes: a WebSocket upgrade (on any path) becomes a connection,
/// anything else is a 404 (or 405 on a known path).
async fn fallback(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    slot: Option<Extension<Slot>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    req: Request,
) -> Response {
    match ws {
        Ok(ws) => {
            if shared.is_stopping() {
                return json_error(StatusCode::SERVICE_UNAVAILABLE, "the relay is shutting down");
            }
            let guard = shared.track();
            tracing::debug!(%peer, path = %untrusted(req.uri().path()), "WebSocket upgrade");
            // Talk frames are small, and the read buffer is allocated (and zeroed) per
            // connection up front: at tungstenite's default of 128 KiB, 10,000 idle clients
            // cost 1.4 GB. Larger messages (up to the limit) still arrive over several reads.
            ws.read_buffer_size(WS_READ_BUFFER)
                .max_message_size(WS_READ_LIMIT)
                .max_frame_size(WS_READ_LIMIT)
                .on_failed_upgrade(
                    move |e: axum::Error| tracing::debug!(%peer, error = %untrusted(&e.to_string()), "WebSocket upgrade failed"),
                )
                .on_upgrade(move |socket| async move {
                    // The connection keeps its place in the connection cap.
                    let _slot = slot;
                    let _guard = guard;
                    serve_connection(shared, socket, peer).await;
                })
        }
        Err(_) => match req.uri().path() {
            "/v1/talk" | "/v1/health" => json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            _ => json_error(
                StatusCode::NOT_FOUND,
                "not found (WebSocket clients connect to /, talks are POSTed to /v1/talk)",
            ),
        },
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

fn parse_body(body: &[u8]) -> Result<(UserId, String), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    let obj = v.as_object().ok_or("the body must be a JSON object")?;
    let to = match obj.get("to") {
        None | Some(Value::Null) => return Err("field \"to\" is missing".into()),
        Some(to) => {
            <UserId as serde::Deserialize>::deserialize(to).map_err(|e| format!("field \"to\" is invalid: {e}"))?
        }
    };
    let talk = match obj.get("talk") {
        None | Some(Value::Null) => return Err("field \"talk\" is missing".into()),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("field \"talk\" must be a string".into()),
    };
    Ok((to, talk))
}

async fn post_talk(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    if shared.gate().logins_blocked(peer.ip()) {
        shared.gate().failed_login(&peer.to_string(), peer.ip(), "a POST from an address with too many failed logins");
        return json_error(StatusCode::TOO_MANY_REQUESTS, "too many failed logins from this address; try again later");
    }
    let user: User = match bearer(req.headers()).and_then(|t| shared.authenticate(t)) {
        Some(u) => u,
        None => {
            shared.gate().failed_login(
                &peer.to_string(),
                peer.ip(),
                "a POST /v1/talk with a missing or unknown bearer token",
            );
            return json_error(StatusCode::UNAUTHORIZED, "missing or unknown bearer token");
        }
    };
    if !shared.gate().http_allowed(&user.id) {
        tracing::info!(user = %user.id, "POST /v1/talk rate limited");
        return json_error(StatusCode::TOO_MANY_REQUESTS, "too many requests; slow down");
    }
    let bytes = match read_body(&shared, req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let (to, talk) = match parse_body(&bytes) {
        Ok(v) => v,
        Err(msg) => return json_error(StatusCode::BAD_REQUEST, msg),
    };
    match shared.deliver(&user, &to, talk, None).await {
        Ok(crate::hub::Delivered { seq, ts }) => {
            tracing::info!(from = %user.id, to = %untrusted(to.as_str()), seq, "talk posted");
            json_response(StatusCode::OK, json!({"seq": seq, "ts": ts}))
        }
        Err(e) => deliver_error(&user, &to, e),
    }
}

/// The body, within the size limit and the body timeout; or the answer to give.
async fn read_body(shared: &Shared, req: Request) -> Result<Bytes, Response> {
    let limit = shared.config().http_body_limit;
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let too_big = || json_error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over {limit} bytes"));
    if declared.is_some_and(|n| u64::try_from(limit).is_ok_and(|limit| n > limit)) {
        return Err(too_big());
    }
    let body: Body = req.into_body();
    let read = tokio::time::timeout(shared.config().body_timeout, axum::body::to_bytes(body, limit)).await;
    match read {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => {
            let over = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.to_string().contains("length limit");
            Err(if over {
                too_big()
            } else {
                json_error(StatusCode::BAD_REQUEST, format!("could not read the body: {e}"))
            })
        }
        Err(_) => {
            let secs = shared.config().body_timeout.as_secs_f64();
            let mut resp = json_error(StatusCode::REQUEST_TIMEOUT, format!("the body did not arrive within {secs} s"));
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            Err(resp)
        }
    }
}

fn deliver_error(user: &User, to: &UserId, e: DeliverError) -> Response {
    match e {
        DeliverError::UnknownRecipient => json_error(StatusCode::NOT_FOUND, format!("no user with id {to}")),
        e @ DeliverError::TooLarge => json_error(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        e @ DeliverError::Empty => json_error(StatusCode::BAD_REQUEST, e.to_string()),
        e @ DeliverError::Stopped => json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        // Not stored, so not lost: the sender tries again.
        DeliverError::Unavailable(e) => {
            tracing::warn!(error = %e, "could not store a talk; answering 503");
            let mut resp = json_error(StatusCode::SERVICE_UNAVAILABLE, "the relay's queue is out of reach; try again");
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            resp
        }
        DeliverError::QueueFull(full) => {
            tracing::info!(from = %user.id, to = %untrusted(to.as_str()), "talk refused: {full}");
            json_response(StatusCode::INSUFFICIENT_STORAGE, json!({"error": full.to_string(), "code": "queue_full"}))
        }
        DeliverError::Broker(e) => {
            tracing::error!(error = %e, "could not store a talk");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "the relay could not store the talk")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer   abc  "));
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn bodies() {
        assert_eq!(parse_body(br#"{"to": 1, "talk": "hi"}"#).unwrap(), (UserId::from(1), "hi".into()));
        assert_eq!(parse_body(br#"{"to": "u-2", "talk": ""}"#).unwrap(), (UserId::from("u-2"), "".into()));
        for bad in [
            &br#"{"to": 1}"#[..],
            br#"{"talk": "x"}"#,
            br#"{"to": {}, "talk": "x"}"#,
            br#"{"to": 1, "talk": 5}"#,
            b"[1]",
            b"{",
            b"",
        ] {
            assert!(parse_body(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
