//! Realistic traffic: what a social network's notification events look like in bulk, for the
//! benchmark's main rows (and any test that wants more than one owner and one post).
//!
//! Owners are drawn from a Zipf distribution (s = 1.1) over 100,000 users, so a few owners get
//! much of the traffic and most get a little; resources are spread over 50,000 posts and
//! 200,000 comments, trigger users over 1,000,000. The types are mixed: likes of posts and
//! comments, replies, follows; 5% of events take back an earlier like or follow (unlike,
//! unfollow) and 2% repeat an earlier event exactly (a client that published twice). The
//! sequence is the same on every run (a fixed seed), so runs compare like with like.

/// Users who own feeds; the Zipf distribution ranks them.
pub const OWNERS: u64 = 100_000;
pub const POSTS: u64 = 50_000;
pub const COMMENTS: u64 = 200_000;
pub const TRIGGER_USERS: u64 = 1_000_000;
/// The Zipf exponent of owner popularity.
pub const ZIPF_S: f64 = 1.1;
/// Shares of all events, in percent.
pub const UNDO_PERCENT: u64 = 5;
pub const REPEAT_PERCENT: u64 = 2;

const SEED: u64 = 0x6e6f_7469_6669_6572;
/// Fixed so that every run publishes the same bytes; one second per event after it.
const FIRST_CREATED_AT: i64 = 1_765_318_000;

/// One event as published, with the fields a minimal writer needs without parsing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub subject: &'static str,
    pub owner: String,
    pub trigger_user: String,
    pub action: u8,
    pub resource_type: &'static str,
    pub resource_id: String,
    pub excerpt: Option<String>,
    pub created_at: i64,
    /// An unlike or unfollow: removes the notification its like or follow made.
    pub removes: bool,
}

impl Event {
    /// The JSON body, as SPEC's events have it.
    pub fn body(&self) -> String {
        let excerpt = self
            .excerpt
            .as_ref()
            .map(|text| format!(r#","excerpt":"{text}""#))
            .unwrap_or_default();
        format!(
            r#"{{"owner":"{}","trigger_user":"{}","username":"{}","action":{},"resource_type":"{}","resource_id":"{}"{excerpt},"created_at":{}}}"#,
            self.owner,
            self.trigger_user,
            username(&self.trigger_user),
            self.action,
            self.resource_type,
            self.resource_id,
            self.created_at
        )
    }

    /// The notification's sort key, as the worker stores it.
    pub fn action_key(&self) -> String {
        format!(
            "{}#{}#{}#0001-01-01T00:00:00Z",
            self.trigger_user, self.resource_id, self.action
        )
    }

    /// Whether the worker skips it (nobody is notified of their own actions).
    pub fn is_own(&self) -> bool {
        self.owner == self.trigger_user
    }

    /// The user's display name, derived from the id.
    pub fn username(&self) -> String {
        username(&self.trigger_user)
    }
}

fn username(user: &str) -> String {
    format!("User {}", user.trim_start_matches("user-"))
}

/// The kinds of new events, with their weights (percent of the events that are neither
/// undos nor repeats).
const KINDS: [(Kind, u64); 5] = [
    (Kind::PostLike, 45),
    (Kind::CommentLike, 15),
    (Kind::PostReply, 15),
    (Kind::CommentReply, 10),
    (Kind::Follow, 15),
];

#[derive(Debug, Clone, Copy)]
enum Kind {
    PostLike,
    CommentLike,
    PostReply,
    CommentReply,
    Follow,
}

/// `count` events of realistic traffic, the same on every call.
pub fn realistic(count: usize) -> Vec<Event> {
    let owners = Zipf::new(OWNERS, ZIPF_S);
    let mut random = SplitMix64(SEED);
    let mut events: Vec<Event> = Vec::with_capacity(count);
    // Events an unlike or unfollow can take back: indexes of earlier likes and follows.
    let mut undoable: Vec<usize> = Vec::new();
    for i in 0..count {
        let created_at = FIRST_CREATED_AT + i as i64;
        let roll = random.below(100);
        if roll < UNDO_PERCENT && !undoable.is_empty() {
            let taken = undoable.swap_remove(random.below(undoable.len() as u64) as usize);
            events.push(undo(&events[taken], created_at));
            continue;
        }
        if roll < UNDO_PERCENT + REPEAT_PERCENT && !events.is_empty() {
            let repeated = events[random.below(events.len() as u64) as usize].clone();
            events.push(repeated);
            continue;
        }
        // Owners by popularity rank, scattered over the id space (a bijection, as 7919 is
        // prime to 100,000) so that the popular ones are not neighbours in the key order.
        let owner = format!("user-{}", (owners.sample(&mut random) * 7919 + 13) % OWNERS);
        let trigger_user = format!("user-{}", random.below(TRIGGER_USERS));
        let post = format!("post-{}", random.below(POSTS));
        let comment = format!("comment-{}", random.below(COMMENTS));
        let mut pick = random.below(100);
        let kind = KINDS
            .iter()
            .find(|(_, weight)| {
                let hit = pick < *weight;
                pick = pick.saturating_sub(*weight);
                hit
            })
            .map_or(Kind::PostLike, |(kind, _)| *kind);
        let (subject, action, resource_type, resource_id, excerpt) = match kind {
            Kind::PostLike => ("notifications.post.like", 1, "POST", post, None),
            Kind::CommentLike => ("notifications.comment.like", 2, "COMMENT", comment, None),
            Kind::PostReply => ("notifications.reply.post", 3, "POST", post, Some(excerpt_of(i))),
            Kind::CommentReply => (
                "notifications.reply.comment",
                4,
                "COMMENT",
                comment,
                Some(excerpt_of(i)),
            ),
            Kind::Follow => ("notifications.user.follow", 6, "USER", owner.clone(), None),
        };
        if matches!(kind, Kind::PostLike | Kind::CommentLike | Kind::Follow) {
            undoable.push(events.len());
        }
        events.push(Event {
            subject,
            owner,
            trigger_user,
            action,
            resource_type,
            resource_id,
            excerpt,
            created_at,
            removes: false,
        });
    }
    events
}

/// The unlike or unfollow of `done`.
fn undo(done: &Event, created_at: i64) -> Event {
    let subject = match done.subject {
        "notifications.post.like" => "notifications.post.unlike",
        "notifications.comment.like" => "notifications.comment.unlike",
        _ => "notifications.user.unfollow",
    };
    Event {
        subject,
        excerpt: None,
        created_at,
        removes: true,
        ..done.clone()
    }
}

fn excerpt_of(i: usize) -> String {
    format!("Reply {i}: thanks for writing this up, it changed how I think about queues")
}

/// How a run of traffic is made up, for the benchmark's report.
#[derive(Debug, Default)]
pub struct Shape {
    pub events: usize,
    pub owners: usize,
    /// Events of the most popular owner.
    pub top_owner_events: usize,
    pub undos: usize,
    pub repeats: usize,
    pub by_subject: std::collections::BTreeMap<&'static str, usize>,
}

pub fn shape(events: &[Event]) -> Shape {
    let mut per_owner: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut shape = Shape {
        events: events.len(),
        ..Shape::default()
    };
    for event in events {
        *per_owner.entry(&event.owner).or_default() += 1;
        *shape.by_subject.entry(event.subject).or_default() += 1;
        if !seen.insert(format!("{}|{}", event.subject, event.body())) {
            shape.repeats += 1;
        } else if event.removes {
            shape.undos += 1;
        }
    }
    shape.owners = per_owner.len();
    shape.top_owner_events = per_owner.values().copied().max().unwrap_or(0);
    shape
}

/// Publishes `events` in order (see [`super::publish_all`]).
pub async fn publish(js: &async_nats::jetstream::Context, events: &[Event]) {
    super::publish_all(js, events.iter().map(|event| (event.subject, event.body()))).await;
}

/// Zipf ranks 0..n (rank 0 the most popular) by inverting the cumulative distribution.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: u64, s: f64) -> Zipf {
        let mut total = 0.0;
        let mut cumulative: Vec<f64> = (1..=n)
            .map(|rank| {
                total += (rank as f64).powf(-s);
                total
            })
            .collect();
        for value in &mut cumulative {
            *value /= total;
        }
        Zipf { cumulative }
    }

    fn sample(&self, random: &mut SplitMix64) -> u64 {
        let u = random.unit();
        self.cumulative.partition_point(|&c| c < u) as u64
    }
}

/// A small, fast, seedable generator (SplitMix64): enough for traffic, no dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}
