//! Whether the worker can do its job right now, for `/readyz`: NATS connected, the store
//! answering, intake not paused by a systemic store error.

use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    pub ready: bool,
    /// "connected" or "disconnected".
    pub nats: String,
    /// "ok", or what is wrong.
    pub store: String,
}

#[derive(Default)]
pub struct Readiness {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    nats_connected: bool,
    /// `None` until the first probe; then the last probe's error, if any.
    store_problem: Option<Option<String>>,
}

impl Readiness {
    pub fn set_nats_connected(&self, connected: bool) {
        self.lock().nats_connected = connected;
    }

    pub fn set_store(&self, problem: Option<String>) {
        self.lock().store_problem = Some(problem);
    }

    /// `paused`: intake paused after a systemic store error.
    pub fn status(&self, paused: bool) -> Status {
        let state = self.lock();
        let store = match (&state.store_problem, paused) {
            (None, _) => "not probed yet".to_owned(),
            (Some(Some(problem)), _) => format!("unavailable: {problem}"),
            (Some(None), true) => "unavailable: writes failing, intake paused".to_owned(),
            (Some(None), false) => "ok".to_owned(),
        };
        Status {
            ready: state.nats_connected && store == "ok",
            nats: if state.nats_connected {
                "connected"
            } else {
                "disconnected"
            }
            .to_owned(),
            store,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_with_nats_and_a_healthy_store() {
        let readiness = Readiness::default();
        assert!(!readiness.status(false).ready, "nothing probed yet");
        readiness.set_nats_connected(true);
        readiness.set_store(None);
        assert!(readiness.status(false).ready);
        assert!(!readiness.status(true).ready, "paused intake");
        readiness.set_store(Some("table missing".into()));
        let status = readiness.status(false);
        assert_eq!(
            (status.ready, status.store.as_str()),
            (false, "unavailable: table missing")
        );
        readiness.set_store(None);
        readiness.set_nats_connected(false);
        assert_eq!(readiness.status(false).nats, "disconnected");
    }
}
