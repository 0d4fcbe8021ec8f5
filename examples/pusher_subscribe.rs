//! Subscribes to one owner's Pusher channel and prints what arrives: the README's realtime
//! walkthrough uses it in place of the iOS app.
//!
//! `cargo run --example pusher_subscribe -- user-123` with `PUSHER_HOST`, `PUSHER_KEY`,
//! `PUSHER_SECRET` (to sign a private channel's subscription, as an app's auth endpoint
//! would) and optionally `PUSHER_CHANNEL` (default `user-{owner}-notifications`) set as
//! for the worker.

use futures::{SinkExt, StreamExt};
use notification_worker::delivery::template::encode_owner;
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let owner = std::env::args().nth(1).ok_or("usage: pusher_subscribe OWNER")?;
    let var = |name: &str| std::env::var(name).map_err(|_| format!("set {name}"));
    let host = var("PUSHER_HOST")?;
    let key = var("PUSHER_KEY")?;
    let template = std::env::var("PUSHER_CHANNEL").unwrap_or_else(|_| "user-{owner}-notifications".into());
    let channel = template.replace("{owner}", &encode_owner(&owner));
    let ws = host.replacen("http", "ws", 1);
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("{ws}/app/{key}?protocol=7")).await?;
    while let Some(frame) = socket.next().await {
        let Message::Text(text) = frame? else { continue };
        let frame: serde_json::Value = serde_json::from_str(&text)?;
        let data: serde_json::Value = match &frame["data"] {
            serde_json::Value::String(text) => serde_json::from_str(text).unwrap_or_default(),
            other => other.clone(),
        };
        match frame["event"].as_str().unwrap_or_default() {
            "pusher:connection_established" => {
                let socket_id = data["socket_id"].as_str().unwrap_or_default();
                let mut subscription = serde_json::json!({ "channel": channel });
                if channel.starts_with("private-") {
                    let secret = var("PUSHER_SECRET")?;
                    let signing = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
                    let signature = ring::hmac::sign(&signing, format!("{socket_id}:{channel}").as_bytes());
                    subscription["auth"] = format!("{key}:{}", hex::encode(signature.as_ref())).into();
                }
                let subscribe = serde_json::json!({ "event": "pusher:subscribe", "data": subscription });
                socket.send(Message::Text(subscribe.to_string().into())).await?;
            }
            "pusher_internal:subscription_succeeded" => {
                eprintln!("subscribed to {channel}; waiting for notifications")
            }
            "pusher:ping" => {
                socket
                    .send(Message::Text(r#"{"event":"pusher:pong","data":{}}"#.into()))
                    .await?;
            }
            "pusher:error" | "pusher:subscription_error" => return Err(format!("refused: {frame}").into()),
            event if !event.starts_with("pusher") => println!("{event} {data}"),
            _ => {}
        }
    }
    Ok(())
}
