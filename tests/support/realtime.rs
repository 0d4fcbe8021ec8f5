//! What realtime clients receive: every message the `nats` channel publishes, as a
//! subscriber on the owners' subjects sees it, and a wait for the channel to be done.

use super::{NatsServer, eventually};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Every realtime message received on `users.*.notifications`, in arrival order.
#[derive(Clone, Default)]
pub struct Realtime(Arc<Mutex<Vec<(String, serde_json::Value)>>>);

impl Realtime {
    pub async fn subscribe(nats: &NatsServer, subject: &str) -> Realtime {
        let client = nats.client().await;
        let mut subscriber = client.subscribe(subject.to_owned()).await.unwrap();
        client.flush().await.unwrap();
        let realtime = Realtime::default();
        let received = Arc::clone(&realtime.0);
        tokio::spawn(async move {
            let _client = client;
            while let Some(message) = futures::StreamExt::next(&mut subscriber).await {
                let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
                received.lock().unwrap().push((message.subject.to_string(), body));
            }
        });
        realtime
    }

    pub fn messages(&self) -> Vec<(String, serde_json::Value)> {
        self.0.lock().unwrap().clone()
    }

    /// (event, id) of every message, in arrival order.
    pub fn events(&self) -> Vec<(String, String)> {
        self.messages()
            .into_iter()
            .map(|(_, body)| {
                (
                    body["event"].as_str().unwrap().to_owned(),
                    body["data"]["id"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    pub fn count(&self, event: &str) -> usize {
        self.events().iter().filter(|(name, _)| name == event).count()
    }
}

/// Waits until the channel's consumer has nothing pending or unacknowledged.
pub async fn wait_until_delivered(nats: &NatsServer, within: Duration, channel: &str) {
    let js = nats.jetstream().await;
    let name = format!("notification-delivery-{channel}");
    eventually(&format!("{name} drained"), within, || {
        let js = js.clone();
        let name = name.clone();
        async move {
            let Ok(stream) = js.get_stream("NOTIFICATION_DELIVERIES").await else {
                return false;
            };
            let Ok(mut consumer) = stream
                .get_consumer::<async_nats::jetstream::consumer::pull::Config>(&name)
                .await
            else {
                return false;
            };
            let info = consumer.info().await.unwrap();
            let last = stream.clone().info().await.unwrap().state.last_sequence;
            info.num_pending == 0 && info.num_ack_pending == 0 && info.ack_floor.stream_sequence == last
        }
    })
    .await;
}
