//! The receiver of MLflow registry webhooks (MLflow 3.3+): an alias created or deleted in
//! MLflow is recorded at once instead of at the next poll.
//!
//! MLflow signs each delivery: `X-MLflow-Signature: v1,<base64 HMAC-SHA256(secret,
//! "<delivery id>.<timestamp>.<body>")>`, with `X-MLflow-Delivery-Id` and
//! `X-MLflow-Timestamp` (Unix seconds). Unsigned, wrongly signed or stale deliveries are
//! refused with 401. The webhook only says which model changed: its aliases are then read
//! back from the registry, so a forged or replayed body could at most cause a re-read.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use stockcast_runtime::clock::SharedClock;
use stockcast_runtime::echo::truncate_for_message;
use stockcast_runtime::{Secret, Shutdown};
use tokio::net::TcpListener;

use crate::aliases::AliasManager;
use crate::audit::Origin;

/// Path MLflow delivers to.
pub const PATH: &str = "/mlflow/webhook";

#[derive(Debug, Clone)]
struct Receiver {
    aliases: Arc<AliasManager>,
    secret: Secret,
    max_age: Duration,
    /// Tells how old a delivery is.
    clock: SharedClock,
}

/// Serves the webhook receiver on `listener` until `shutdown`, judging deliveries' age by
/// `clock`.
pub async fn serve(
    listener: TcpListener,
    aliases: Arc<AliasManager>,
    secret: Secret,
    max_age: Duration,
    clock: SharedClock,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route(PATH, axum::routing::post(receive))
        .with_state(Receiver {
            aliases,
            secret,
            max_age,
            clock,
        });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await
}

async fn receive(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    if let Err(why) = verify(
        &headers,
        &body,
        receiver.secret.expose(),
        receiver.max_age,
        receiver.clock.now_seconds(),
    ) {
        tracing::warn!(why, "mlflow webhook refused");
        return (StatusCode::UNAUTHORIZED, why);
    }
    #[derive(serde::Deserialize)]
    struct Delivery {
        entity: String,
        #[serde(default)]
        data: serde_json::Value,
    }
    let delivery: Delivery = match serde_json::from_slice(&body) {
        Ok(delivery) => delivery,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("body is not a webhook delivery: {e}"),
            );
        }
    };
    if delivery.entity != "model_version_alias" {
        return (
            StatusCode::OK,
            format!(
                "entity {:?} ignored",
                truncate_for_message(&delivery.entity)
            ),
        );
    }
    let Some(name) = delivery.data.get("name").and_then(|n| n.as_str()) else {
        return (StatusCode::BAD_REQUEST, "data.name is missing".to_owned());
    };
    match receiver.aliases.sync_model(name, Origin::Webhook).await {
        Ok(changes) => (StatusCode::OK, format!("{changes} alias changes recorded")),
        Err(error) => {
            tracing::warn!(%error, model = name, "mlflow webhook: cannot read the model's aliases");
            // MLflow retries 5xx deliveries; polling catches up otherwise.
            (StatusCode::SERVICE_UNAVAILABLE, error.to_string())
        }
    }
}

/// Checks the signature and age of a delivery.
fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secret: &str,
    max_age: Duration,
    now: i64,
) -> Result<(), String> {
    let header = |name: &str| -> Result<&str, String> {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("header {name} is missing"))
    };
    let signature = header("x-mlflow-signature")?;
    let delivery_id = header("x-mlflow-delivery-id")?;
    let timestamp = header("x-mlflow-timestamp")?;
    let sent: i64 = timestamp.parse().map_err(|_| {
        format!(
            "X-MLflow-Timestamp {:?} is not Unix seconds",
            truncate_for_message(timestamp)
        )
    })?;
    let skew = now.abs_diff(sent);
    if skew > max_age.as_secs() {
        return Err(if sent <= now {
            format!(
                "delivery is {skew} s old, more than {} s",
                max_age.as_secs()
            )
        } else {
            format!(
                "delivery is dated {skew} s in the future, more than {} s",
                max_age.as_secs()
            )
        });
    }
    let mut signed = Vec::with_capacity(body.len() + 64);
    signed.extend_from_slice(format!("{delivery_id}.{timestamp}.").as_bytes());
    signed.extend_from_slice(body);
    let expected = format!("v1,{}", base64(&hmac_sha256(secret.as_bytes(), &signed)));
    if !constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
        return Err("X-MLflow-Signature does not match".to_owned());
    }
    Ok(())
}

/// HMAC-SHA256 (RFC 2104).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner = Sha256::new()
        .chain_update(block.map(|b| b ^ 0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(block.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::hex;

    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // A key longer than the block is hashed first (RFC 4231 case 6).
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    fn signed(secret: &str, id: &str, ts: &str, body: &[u8]) -> HeaderMap {
        let mut content = format!("{id}.{ts}.").into_bytes();
        content.extend_from_slice(body);
        let mut headers = HeaderMap::new();
        let signature = format!("v1,{}", base64(&hmac_sha256(secret.as_bytes(), &content)));
        headers.insert(
            "x-mlflow-signature",
            signature.parse().unwrap_or_else(|_| unreachable!()),
        );
        headers.insert(
            "x-mlflow-delivery-id",
            id.parse().unwrap_or_else(|_| unreachable!()),
        );
        headers.insert(
            "x-mlflow-timestamp",
            ts.parse().unwrap_or_else(|_| unreachable!()),
        );
        headers
    }

    #[test]
    fn deliveries_are_verified() {
        let body = br#"{"entity":"model_version_alias"}"#;
        let age = Duration::from_secs(300);
        let ok = signed("s3cret", "d1", "1000", body);
        assert_eq!(verify(&ok, body, "s3cret", age, 1100), Ok(()));
        let e = verify(&ok, body, "other", age, 1100).unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        let e = verify(&ok, b"{}", "s3cret", age, 1100).unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        let e = verify(&ok, body, "s3cret", age, 2000).unwrap_err();
        assert!(e.contains("1000 s old"), "{e}");
        // Timestamps far from now in either direction are refused, not overflowed.
        for ts in [i64::MIN.to_string(), i64::MAX.to_string()] {
            let far = signed("s3cret", "d2", &ts, body);
            let e = verify(&far, body, "s3cret", age, 1_700_000_000).unwrap_err();
            assert!(e.contains("more than 300 s"), "{e}");
        }
        let e = verify(&ok, body, "s3cret", age, 100).unwrap_err();
        assert!(e.contains("900 s in the future"), "{e}");
        let e = verify(&HeaderMap::new(), body, "s3cret", age, 1000).unwrap_err();
        assert!(e.contains("x-mlflow-signature is missing"), "{e}");
    }
}
