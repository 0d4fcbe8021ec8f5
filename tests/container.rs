//! The container path: the image's own environment (the Dockerfile's ENV lines and WORKDIR,
//! plus the `-e` flags of `make docker-run`), with the binary itself since no Docker engine
//! runs here. Production with an embedded SQLite file on a fresh path must become ready and
//! store events: the file belongs to the process, which creates it, its folder and its schema.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::*;

const WITHIN: Duration = Duration::from_secs(30);

fn read(file: &str) -> String {
    std::fs::read_to_string(Path::new(MANIFEST_DIR).join(file)).unwrap()
}

/// The Dockerfile's instructions of one kind (`ENV`, `WORKDIR`), continuation lines joined.
fn instructions(dockerfile: &str, kind: &str) -> Vec<String> {
    let joined = dockerfile.replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|line| line.strip_prefix(kind).and_then(|rest| rest.strip_prefix(' ')))
        .map(|rest| rest.trim().to_owned())
        .collect()
}

/// The runtime image's environment: every `NAME=value` of its ENV lines.
fn image_env(dockerfile: &str) -> BTreeMap<String, String> {
    instructions(dockerfile, "ENV")
        .iter()
        .flat_map(|line| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .map(|pair| {
            let (name, value) = pair.split_once('=').expect("ENV NAME=value");
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// The `-e NAME=value` flags of `make docker-run`.
fn docker_run_env(makefile: &str) -> BTreeMap<String, String> {
    let recipe = makefile
        .lines()
        .skip_while(|line| !line.starts_with("docker-run:"))
        .nth(1)
        .expect("a docker-run recipe");
    let words: Vec<&str> = recipe.split_whitespace().collect();
    words
        .windows(2)
        .filter(|pair| pair[0] == "-e")
        .map(|pair| {
            let (name, value) = pair[1].split_once('=').expect("-e NAME=value");
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// An absolute path of the image, inside `root` instead.
fn inside(root: &Path, image_path: &str) -> PathBuf {
    root.join(image_path.trim_start_matches('/'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_environment_becomes_ready_and_stores_events_on_a_fresh_path() {
    let dockerfile = read("Dockerfile");
    let image = image_env(&dockerfile);
    let docker_run = docker_run_env(&read("Makefile"));
    assert_eq!(image.get("ENVIRONMENT").map(String::as_str), Some("production"));
    assert_eq!(docker_run.get("NOTIF_STORE").map(String::as_str), Some("sqlite"));

    let nats = NatsServer::start();
    let root = tempfile::tempdir().unwrap();
    // The operator's `setup`, from elsewhere, as in production: streams and consumer on the
    // shared NATS, nothing in the container's (fresh) volume.
    let operator = tempfile::tempdir().unwrap();
    let setup = command(
        operator.path(),
        &[
            ("ENVIRONMENT", "production".into()),
            ("NOTIF_STORE", "sqlite".into()),
            ("NATS_URL", nats.url()),
            (
                "NOTIF_SQLITE_PATH",
                operator.path().join("operator.db").display().to_string(),
            ),
        ],
    )
    .arg("setup")
    .output()
    .unwrap();
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );

    // The image's environment, its paths mapped into `root`, its port a free one.
    let database = inside(root.path(), &image["NOTIF_SQLITE_PATH"]);
    let (host, _) = image["HTTP_ADDR"].rsplit_once(':').unwrap();
    let port = free_port();
    let mut env: Vec<(&'static str, String)> = Vec::new();
    for (name, value) in image.iter().chain(&docker_run) {
        let value = match name.as_str() {
            "NOTIF_SQLITE_PATH" => database.display().to_string(),
            "HTTP_ADDR" => format!("{host}:{port}"),
            "NATS_URL" => nats.url(),
            _ => value.clone(),
        };
        env.push((name.clone().leak(), value));
    }
    let workdir = instructions(&dockerfile, "WORKDIR");
    let workdir = inside(root.path(), workdir.last().expect("a WORKDIR"));
    // `useradd --create-home` makes the home folder; `data/` under it does not exist.
    std::fs::create_dir_all(&workdir).unwrap();
    assert!(!database.parent().unwrap().exists(), "a fresh path");

    let worker = Worker::start(&workdir, &env);
    let addr = format!("127.0.0.1:{port}");
    let mut last = (0, String::new());
    let deadline = std::time::Instant::now() + WITHIN;
    while std::time::Instant::now() < deadline {
        last = http_get(&addr, "/readyz");
        if last.0 == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(last.0, 200, "/readyz after {WITHIN:?}: {}", last.1);

    publish(
        &nats.jetstream().await,
        "notifications.post.like",
        like("user-1", "user-2", "post-1"),
    )
    .await;
    let folder = database.parent().unwrap();
    wait_until("the event stored in the image's database", WITHIN, || {
        count_rows(folder) == 1
    });
    // The outcome is logged just after the commit: wait for the line, never race it.
    wait_until("the event logged as created", WITHIN, || {
        worker.count("created") == 1
    });
    assert_eq!(count_rows(folder), 1, "stored once");
}
