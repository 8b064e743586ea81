//! The HTTP side: `POST /v1/talk`, `GET /v1/health`, and WebSocket upgrades on any path.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, Request, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use talkbell_core::protocol::UserId;

use crate::hub::{DeliverError, Shared};
use crate::users::User;
use crate::ws::{serve_connection, WS_READ_LIMIT};

/// Read buffer per WebSocket connection.
const WS_READ_BUFFER: usize = 4 * 1024;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/talk", post(post_talk).fallback(fallback))
        .route("/v1/health", get(health).fallback(fallback))
        .fallback(fallback)
        .with_state(shared)
}

fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    let mut resp = (status, [(header::CONTENT_TYPE, "application/json")], json!({"error": message.into()}).to_string())
        .into_response();
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
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    req: Request,
) -> Response {
    match ws {
        Ok(ws) => {
            if *shared.shutdown.borrow() {
                return json_error(StatusCode::SERVICE_UNAVAILABLE, "the relay is shutting down");
            }
            let guard = shared.tracker.track();
            tracing::debug!(%peer, path = req.uri().path(), "WebSocket upgrade");
            // Talk frames are small, and the read buffer is allocated (and zeroed) per
            // connection up front: tungstenite's default 128 KiB made 10,000 idle clients
            // cost 1.4 GB. Larger messages (up to the limit) still arrive over several reads.
            ws.read_buffer_size(WS_READ_BUFFER)
                .max_message_size(WS_READ_LIMIT)
                .max_frame_size(WS_READ_LIMIT)
                .on_failed_upgrade(move |e| tracing::debug!(%peer, error = %e, "WebSocket upgrade failed"))
                .on_upgrade(move |socket| async move {
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

async fn post_talk(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let user: User = match bearer(req.headers()).and_then(|t| shared.users.load().authenticate(t).cloned()) {
        Some(u) => u,
        None => return json_error(StatusCode::UNAUTHORIZED, "missing or unknown bearer token"),
    };
    if !shared.http_allowed(&user.id) {
        tracing::info!(user = %user.id, "POST /v1/talk rate limited");
        return json_error(StatusCode::TOO_MANY_REQUESTS, "too many requests; slow down");
    }
    let limit = shared.cfg.http_body_limit;
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return json_error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over {limit} bytes"));
    }
    let body: Body = req.into_body();
    let bytes: Bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(e) => {
            let too_big = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.to_string().contains("length limit");
            return if too_big {
                json_error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over {limit} bytes"))
            } else {
                json_error(StatusCode::BAD_REQUEST, format!("could not read the body: {e}"))
            };
        }
    };
    let (to, talk) = match parse_body(&bytes) {
        Ok(v) => v,
        Err(msg) => return json_error(StatusCode::BAD_REQUEST, msg),
    };
    match shared.deliver(&user, &to, talk).await {
        Ok((seq, ts)) => {
            tracing::info!(from = %user.id, to = %to, seq, "talk posted");
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], json!({"seq": seq, "ts": ts}).to_string())
                .into_response()
        }
        Err(DeliverError::UnknownRecipient) => json_error(StatusCode::NOT_FOUND, format!("no user with id {to}")),
        Err(e @ DeliverError::TooLarge) => json_error(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        Err(e @ DeliverError::Empty) => json_error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e @ DeliverError::Stopped) => json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(DeliverError::Store(e)) => {
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
