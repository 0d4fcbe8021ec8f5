//! `make run` on a fresh machine: with no NATS server listening it starts a private
//! `nats-server -js` (store under ./data/nats), says so in one line, and stops it when the
//! worker stops, on SIGTERM as on Ctrl-C; a server that already listens is used, and a
//! NATS_URL elsewhere starts nothing. Runs the Makefile's own `run` recipe (`-o build`: the
//! test's worker binary, not a release build) against free ports, never 4222.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

const WITHIN: Duration = Duration::from_secs(60);
const STARTED: &str = "run-local: nothing listened on";

/// `make run` as a user types it, in `dir` (where ./data goes), with the worker's HTTP
/// listener on a free port and JSON logs to read.
fn make_run(dir: &Path, nats_url: &str) -> Command {
    let env = vec![
        ("NATS_URL", nats_url.to_owned()),
        ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
        ("LOG_LEVEL", "info".to_owned()),
    ];
    // SIGINT as in a terminal: a test run started in the background ignores it, and a shell
    // cannot trap a signal that was ignored when it started.
    let mut command = command_for(Path::new("env"), dir, &env);
    command
        .args(["--default-signal=INT", "make", "--no-print-directory"])
        .arg("-f")
        .arg(Path::new(MANIFEST_DIR).join("Makefile"))
        .args(["-o", "build", "run"])
        .arg(format!("BIN={WORKER_BIN}"));
    command
}

/// Every process whose working directory is `dir`: (pid, command line). The worker and a
/// server the script starts run there; nothing else on the machine does.
fn processes_in(dir: &Path) -> Vec<(u32, String)> {
    let dir = dir.canonicalize().unwrap();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if std::fs::read_link(entry.path().join("cwd")).ok().as_deref() != Some(dir.as_path()) {
            continue;
        }
        // A zombie waiting for its parent has exited already.
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        found.push((pid, cmdline.trim().to_owned()));
    }
    found
}

fn nats_servers_in(dir: &Path) -> Vec<(u32, String)> {
    processes_in(dir)
        .into_iter()
        .filter(|(_, cmdline)| cmdline.starts_with("nats-server"))
        .collect()
}

/// Kills whatever a failed test left running in `dir` (the script's children are in their
/// own process groups: killing `make` alone would leave them).
struct Leftovers(PathBuf);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for (pid, _) in processes_in(&self.0) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }
}

fn port_answers(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// Starts `make run` where nothing listens, checks the server it started and the worker,
/// then stops it with `stop` and checks that both are gone.
async fn starts_and_stops_a_private_server(stop: impl FnOnce(&mut Worker) -> std::process::ExitStatus) {
    let dir = tempfile::tempdir().unwrap();
    let _leftovers = Leftovers(dir.path().to_owned());
    let port = free_port();
    let mut command = make_run(dir.path(), &format!("nats://127.0.0.1:{port}"));
    // Its own process group, like a shell's foreground job: Ctrl-C signals the whole group.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut worker = Worker::start_command(command, dir.path());

    let said: Vec<String> = worker
        .logs()
        .into_iter()
        .filter(|line| line.starts_with("run-local:"))
        .collect();
    assert_eq!(said.len(), 1, "one line about the server: {said:?}");
    assert!(
        said[0].starts_with(&format!("{STARTED} 127.0.0.1:{port}: started nats-server -js")),
        "{said:?}"
    );
    assert!(said[0].contains("store ./data/nats"), "{said:?}");
    let servers = nats_servers_in(dir.path());
    assert_eq!(servers.len(), 1, "one nats-server started: {servers:?}");
    assert!(
        servers[0].1.contains(&format!("-p {port}")) && servers[0].1.contains("-sd data/nats"),
        "{servers:?}"
    );
    assert!(
        dir.path().join("data/nats/jetstream").is_dir(),
        "the server keeps JetStream in ./data/nats"
    );

    let addr = worker.http_addr();
    wait_until("/readyz 200", WITHIN, || http_get(&addr, "/readyz").0 == 200);
    // And it works: an event published to that server is stored in ./data.
    let nats = async_nats::connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap();
    publish(
        &async_nats::jetstream::new(nats.clone()),
        "notifications.post.like",
        like("user-1", "user-2", "post-1"),
    )
    .await;
    drop(nats);
    let data = dir.path().join("data");
    wait_until("the event stored in ./data", WITHIN, || count_rows(&data) == 1);

    // make itself ends by the signal it got (as make does); the worker must have heard it
    // once, finished cleanly, and taken its server with it.
    let _ = stop(&mut worker);
    worker.wait_for_log("worker stopped", Duration::from_secs(1));
    let requested = worker
        .logs()
        .iter()
        .filter(|line| line.contains("shutdown requested"))
        .count();
    assert_eq!(requested, 1, "{}", worker.logs().join("\n"));
    assert_eq!(
        processes_in(dir.path()),
        Vec::new(),
        "no worker, no nats-server left"
    );
    assert!(!port_answers(port), "the private server is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_a_private_nats_server_and_stops_it_on_sigterm() {
    starts_and_stops_a_private_server(|worker| worker.stop_with("TERM", WITHIN)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_a_private_nats_server_and_stops_it_on_ctrl_c() {
    starts_and_stops_a_private_server(|worker| {
        // Ctrl-C: SIGINT to the terminal's foreground process group, make and all.
        let group = format!("-{}", worker.pid());
        let sent = Command::new("kill")
            .args(["-INT", "--", &group])
            .status()
            .unwrap();
        assert!(sent.success());
        worker.wait_for_exit("Ctrl-C", WITHIN)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uses_the_nats_server_that_already_listens() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let _leftovers = Leftovers(dir.path().to_owned());
    let mut worker = Worker::start_command(make_run(dir.path(), &nats.url()), dir.path());
    let addr = worker.http_addr();
    wait_until("/readyz 200", WITHIN, || http_get(&addr, "/readyz").0 == 200);
    assert!(
        !worker.logs().iter().any(|line| line.starts_with("run-local:")),
        "{}",
        worker.logs().join("\n")
    );
    assert_eq!(nats_servers_in(dir.path()), Vec::new(), "no server started");
    assert!(!dir.path().join("data/nats").exists());
    publish(
        &nats.jetstream().await,
        "notifications.post.like",
        like("user-1", "user-2", "post-1"),
    )
    .await;
    let data = dir.path().join("data");
    wait_until("the event stored in ./data", WITHIN, || count_rows(&data) == 1);

    let _ = worker.terminate(WITHIN);
    worker.wait_for_log("worker stopped", Duration::from_secs(1));
    assert_eq!(processes_in(dir.path()), Vec::new(), "the worker is gone");
    assert!(port_answers(nats.port), "the user's server still runs");
}

/// A NATS_URL that is not one local address is the user's own infrastructure: nothing is
/// started for it, even when nothing answers (the worker then says it cannot connect).
#[test]
fn a_nats_url_elsewhere_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let _leftovers = Leftovers(dir.path().to_owned());
    let url = format!(
        "nats://127.0.0.1:{},nats://127.0.0.1:{}",
        free_port(),
        free_port()
    );
    let output = make_run(dir.path(), &url).stdin(Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("cannot connect to NATS"), "{stderr}");
    assert!(!stderr.contains("run-local:"), "{stderr}");
    assert!(!dir.path().join("data/nats").exists());
    assert_eq!(processes_in(dir.path()), Vec::new());
}

/// Where nats-server is missing and cannot be installed (here: no apt-get, no brew), the
/// script says which command installs it, and starts no worker.
#[test]
fn a_missing_nats_server_is_named_with_the_command_that_installs_it() {
    let dir = tempfile::tempdir().unwrap();
    let empty_path = tempfile::tempdir().unwrap();
    let output = Command::new("/bin/bash")
        .arg(Path::new(MANIFEST_DIR).join("scripts/run-local.sh"))
        .args([WORKER_BIN, "run"])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", empty_path.path())
        .env("NATS_URL", format!("nats://127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("nats-server is not installed")
            && stderr.contains("go install github.com/nats-io/nats-server/v2@latest"),
        "{stderr}"
    );
    assert!(!stderr.contains("worker started"), "{stderr}");
    assert!(!dir.path().join("data/notifications.db").exists());
}
