//! Channel `nats`: the realtime payload on core NATS, on a subject made from
//! `REALTIME_NATS_SUBJECT` (e.g. `users.{owner}.notifications`), for web and mobile clients
//! connected over NATS WebSocket with per-user subscribe permissions (docs/delivery.md).

use super::channel::{Channel, ChannelName, SendError};
use super::job::Job;
use super::template::OwnerTemplate;

#[derive(Debug, Clone)]
pub struct NatsRealtimeSettings {
    pub subject: OwnerTemplate,
}

/// How long the server has to confirm a send.
const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub struct NatsChannel {
    client: async_nats::Client,
    subject: OwnerTemplate,
}

impl NatsChannel {
    /// Publishes on the worker's own connection.
    pub fn new(client: async_nats::Client, settings: &NatsRealtimeSettings) -> NatsChannel {
        NatsChannel {
            client,
            subject: settings.subject.clone(),
        }
    }
}

/// The message realtime clients receive: the event's name and its data.
pub fn realtime_message(job: &Job) -> serde_json::Value {
    serde_json::json!({ "event": job.kind().realtime_event(), "data": job.client_data() })
}

impl Channel for NatsChannel {
    fn name(&self) -> ChannelName {
        ChannelName::Nats
    }

    fn max_batch(&self) -> usize {
        16
    }

    async fn send(&self, jobs: &[Job]) -> Vec<Result<(), SendError>> {
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            let result = match self.subject.render(job.owner()) {
                Err(problem) => Err(SendError::permanent(problem)),
                Ok(subject) => {
                    let body = serde_json::to_vec(&realtime_message(job)).expect("a message serializes");
                    self.client
                        .publish(subject, body.into())
                        .await
                        .map_err(|error| SendError::transient(format!("cannot publish: {error}")))
                }
            };
            results.push(result);
        }
        // Core NATS has no acknowledgement: "accepted" means the server has the messages,
        // which a flush (a round trip after them) tells. While disconnected the client holds
        // them and a flush waits for the reconnection: bounded, that is a transient failure.
        let flushed = match tokio::time::timeout(FLUSH_TIMEOUT, self.client.flush()).await {
            Ok(flushed) => flushed.map_err(|error| format!("cannot flush to NATS: {error}")),
            Err(_) => Err(format!(
                "NATS did not confirm within {}s",
                FLUSH_TIMEOUT.as_secs()
            )),
        };
        if let Err(error) = flushed {
            let failed = SendError::transient(error);
            for result in &mut results {
                if result.is_ok() {
                    *result = Err(failed.clone());
                }
            }
        }
        results
    }
}
