//! A rate limit's decision, free of any I/O: a sliding window over the events a limit
//! admitted for one key (a trigger user's creates, an owner's instant deliveries on one
//! channel), as (publish time, version) pairs.
//!
//! Time is the publish time of a JetStream message (the event's, the delivery job's), never
//! a local clock: every replica, and every redelivery of the same message, sees the same
//! time, so they decide alike. The version names the notification, so a redelivered event
//! that was admitted is recognised and never counted twice.

use super::Rate;
use crate::domain::Version;

/// One admitted event: when its message was published (ms since the Unix epoch) and its
/// version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub published_ms: u64,
    pub version: Version,
}

/// What the limit keeps per key: the events it admitted recently.
///
/// Kept: every admitted event published within two periods of the newest one. One period
/// is what a new event is counted against; the second lets an event that arrives late (a
/// redelivery, a replica that was slower) still be counted exactly against everything that
/// was admitted around it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    admitted: Vec<Admitted>,
    /// The publish time of the newest admitted event that was forgotten (0: none). An event
    /// whose period reaches back past it cannot be counted exactly: it is throttled, so that
    /// forgetting never lets more than the limit through.
    forgotten_until_ms: u64,
}

/// What to do with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Admitted before (a redelivery or a retry): let it through, nothing to write.
    AlreadyAdmitted,
    /// Under the limit: let it through once this window is written in its place.
    Admit(Window),
    /// Over the limit: what the limit does instead (drop the create, fold the delivery into
    /// a digest).
    Throttle,
}

impl Window {
    pub fn decide(&self, event: Admitted, rate: Rate) -> Decision {
        if self.admitted.iter().any(|seen| seen.version == event.version) {
            return Decision::AlreadyAdmitted;
        }
        let period_ms = rate.period_ms();
        // The period ending at the event: (published - period, published]. An admitted event
        // published exactly one period earlier no longer counts.
        let from = event.published_ms.saturating_sub(period_ms);
        if self.forgotten_until_ms > from {
            return Decision::Throttle;
        }
        // Events published after the event count too (it arrived late): the event is
        // admitted only if no period around it would then hold more than the limit.
        let counted = self
            .admitted
            .iter()
            .filter(|seen| seen.published_ms > from)
            .count();
        if counted >= rate.count() {
            return Decision::Throttle;
        }
        let mut next = self.clone();
        next.admitted.push(event);
        next.forget_old(period_ms);
        Decision::Admit(next)
    }

    /// Drops what no event within a period of the newest can need.
    fn forget_old(&mut self, period_ms: u64) {
        let newest = self
            .admitted
            .iter()
            .map(|seen| seen.published_ms)
            .max()
            .unwrap_or(0);
        let keep_after = newest.saturating_sub(period_ms.saturating_mul(2));
        let mut forgotten = self.forgotten_until_ms;
        self.admitted.retain(|seen| {
            let keep = seen.published_ms > keep_after;
            if !keep {
                forgotten = forgotten.max(seen.published_ms);
            }
            keep
        });
        self.forgotten_until_ms = forgotten;
    }

    pub fn len(&self) -> usize {
        self.admitted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.admitted.is_empty()
    }

    /// The stored form: a format byte, the forgotten bound, then 24 bytes per admitted event
    /// (publish ms, version epoch, version sequence), all big-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER + ENTRY * self.admitted.len());
        bytes.push(FORMAT);
        bytes.extend_from_slice(&self.forgotten_until_ms.to_be_bytes());
        for seen in &self.admitted {
            bytes.extend_from_slice(&seen.published_ms.to_be_bytes());
            bytes.extend_from_slice(&seen.version.epoch().to_be_bytes());
            bytes.extend_from_slice(&seen.version.sequence().to_be_bytes());
        }
        bytes
    }

    /// Reads [`Window::encode`]'s form; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Window> {
        let (&format, rest) = bytes.split_first()?;
        if format != FORMAT || rest.len() < 8 || (rest.len() - 8) % ENTRY != 0 {
            return None;
        }
        let number = |at: &[u8]| u64::from_be_bytes(at.try_into().expect("8 bytes"));
        let forgotten_until_ms = number(&rest[..8]);
        let admitted = rest[8..]
            .chunks_exact(ENTRY)
            .map(|entry| {
                Some(Admitted {
                    published_ms: number(&entry[..8]),
                    version: Version::new(number(&entry[8..16]), number(&entry[16..]))?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Window {
            admitted,
            forgotten_until_ms,
        })
    }
}

const FORMAT: u8 = 1;
const HEADER: usize = 1 + 8;
const ENTRY: usize = 24;

/// The largest stored window for a limit of `count`: at most `count` events in each of the
/// two periods kept.
pub fn largest_encoded(count: usize) -> usize {
    HEADER + ENTRY * 2 * count
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    const PERIOD_MS: u64 = 60_000;

    fn rate(count: u32) -> Rate {
        Rate::new(count, Duration::from_millis(PERIOD_MS)).unwrap()
    }

    fn event(published_ms: u64, sequence: u64) -> Admitted {
        Admitted {
            published_ms,
            version: Version::new(1_764_000_000_000_000, sequence).unwrap(),
        }
    }

    /// Feeds the events one after the other, as the store of the window would; returns the
    /// admitted ones (each once).
    fn run(events: &[Admitted], rate: Rate) -> (Window, Vec<Admitted>) {
        let mut window = Window::default();
        let mut admitted = Vec::new();
        for event in events {
            match window.decide(*event, rate) {
                Decision::Admit(next) => {
                    window = Window::decode(&next.encode()).unwrap();
                    admitted.push(*event);
                }
                Decision::AlreadyAdmitted => {
                    assert!(admitted.contains(event), "only what was admitted is known");
                }
                Decision::Throttle => {}
            }
        }
        (window, admitted)
    }

    /// The most admitted events in any period [a, a + period).
    fn busiest_period(admitted: &[Admitted]) -> usize {
        admitted
            .iter()
            .map(|start| {
                admitted
                    .iter()
                    .filter(|other| {
                        other.published_ms >= start.published_ms
                            && other.published_ms < start.published_ms + PERIOD_MS
                    })
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn the_limit_admits_n_then_throttles() {
        let events: Vec<_> = (0..10).map(|i| event(1_000 + i, i)).collect();
        let (window, admitted) = run(&events, rate(3));
        assert_eq!(admitted, events[..3]);
        assert_eq!(window.len(), 3);
    }

    #[test]
    fn a_redelivery_is_never_counted_twice() {
        let first = event(1_000, 1);
        let (window, _) = run(&[first], rate(1));
        assert_eq!(window.decide(first, rate(1)), Decision::AlreadyAdmitted);
        assert_eq!(window.decide(event(1_001, 2), rate(1)), Decision::Throttle);
    }

    #[test]
    fn an_event_exactly_one_period_later_is_admitted() {
        let (window, _) = run(&[event(5_000, 1), event(5_000, 2)], rate(2));
        assert_eq!(
            window.decide(event(5_000 + PERIOD_MS - 1, 3), rate(2)),
            Decision::Throttle
        );
        assert!(matches!(
            window.decide(event(5_000 + PERIOD_MS, 3), rate(2)),
            Decision::Admit(_)
        ));
    }

    #[test]
    fn what_is_older_than_two_periods_is_forgotten_and_a_late_event_behind_it_throttled() {
        const B: u64 = 100_000;
        let (window, admitted) = run(
            &[
                event(B, 1),
                event(B + 10_000, 2),
                event(B + 5_000 + 2 * PERIOD_MS, 3),
            ],
            rate(5),
        );
        assert_eq!(admitted.len(), 3);
        assert_eq!(window.len(), 2, "the first is forgotten");
        // Whose period reaches the forgotten one: not countable, throttled.
        assert_eq!(
            window.decide(event(B + PERIOD_MS - 1, 4), rate(5)),
            Decision::Throttle
        );
        // Late, but within what is kept: counted as usual.
        assert!(matches!(
            window.decide(event(B + PERIOD_MS + 1_000, 5), rate(5)),
            Decision::Admit(_)
        ));
    }

    #[test]
    fn anything_but_the_stored_form_is_refused() {
        let (window, _) = run(&[event(1, 1), event(2, 2)], rate(5));
        let bytes = window.encode();
        assert_eq!(bytes.len(), largest_encoded(1));
        assert_eq!(Window::decode(&bytes), Some(window));
        assert_eq!(Window::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(Window::decode(b""), None);
        assert_eq!(Window::decode(b"[1,2]"), None);
    }

    fn events() -> impl Strategy<Value = Vec<Admitted>> {
        // Up to 60 events over three periods, some sharing a version (redeliveries: the same
        // message, so the same publish time).
        prop::collection::vec((0u64..3 * PERIOD_MS, 0u64..40), 1..60).prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(time, sequence)| event(time, sequence))
                .collect::<Vec<_>>()
        })
    }

    /// One time per version, as the stream gives it.
    fn consistent(events: Vec<Admitted>) -> Vec<Admitted> {
        let mut first: std::collections::HashMap<Version, u64> = Default::default();
        events
            .into_iter()
            .map(|e| Admitted {
                published_ms: *first.entry(e.version).or_insert(e.published_ms),
                version: e.version,
            })
            .collect()
    }

    proptest! {
        /// Whatever the order and the repeats: never more than the limit in any period.
        #[test]
        fn no_period_ever_holds_more_than_the_limit(events in events(), count in 1u32..6) {
            let events = consistent(events);
            let (_, admitted) = run(&events, rate(count));
            prop_assert!(busiest_period(&admitted) <= count as usize);
        }

        /// In publish order, the limit is exact: it admits what a sliding log over every
        /// event would.
        #[test]
        fn in_order_it_admits_exactly_what_a_sliding_log_would(events in events(), count in 1u32..6) {
            let mut events = consistent(events);
            events.sort_by_key(|e| (e.published_ms, e.version));
            events.dedup();
            let (_, admitted) = run(&events, rate(count));
            let mut expected: Vec<Admitted> = Vec::new();
            for event in &events {
                let recent = expected
                    .iter()
                    .filter(|seen| seen.published_ms + PERIOD_MS > event.published_ms)
                    .count();
                if recent < count as usize {
                    expected.push(*event);
                }
            }
            prop_assert_eq!(admitted, expected);
        }

        /// Within one period, the order of arrival and the repeats change nothing: exactly
        /// min(limit, distinct events) are admitted, and a repeat of an admitted one is
        /// recognised.
        #[test]
        fn within_one_period_any_order_admits_exactly_the_limit(
            sequences in prop::collection::vec(0u64..30, 1..80),
            count in 1u32..10,
        ) {
            let events: Vec<_> = sequences.iter().map(|s| event(1_000 + s * 7, *s)).collect();
            let distinct = sequences.iter().collect::<std::collections::HashSet<_>>().len();
            let (window, admitted) = run(&events, rate(count));
            prop_assert_eq!(admitted.len(), distinct.min(count as usize));
            for event in &admitted {
                prop_assert_eq!(window.decide(*event, rate(count)), Decision::AlreadyAdmitted);
            }
        }
    }
}
