//! Helpers the tests that kill `upsell` mid-run share.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// Spawns the command and kills it with SIGKILL once it has printed a line containing
/// `marker.0` for the `marker.1`-th time on stderr (or after `delay`, whichever comes first;
/// `None` = wait for the marker only, at most 10 minutes). Returns whether the process was
/// still running when killed, and its stderr up to then.
pub fn kill_at(
    mut c: Command,
    marker: Option<(&str, usize)>,
    delay: Option<Duration>,
) -> (bool, String) {
    let mut child: Child = c.spawn().expect("the upsell binary runs");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + delay.unwrap_or(Duration::from_secs(600));
    let mut seen = String::new();
    let mut hits = 0;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if marker.is_some_and(|(m, _)| line.contains(m)) {
                    hits += 1;
                    if marker.is_some_and(|(_, n)| hits >= n) {
                        break;
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                assert!(delay.is_some(), "no {marker:?} within 10 minutes:\n{seen}");
                break;
            }
            // stderr closed: the process ended before the kill point.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let running = child.try_wait().unwrap().is_none();
    child.kill().ok(); // SIGKILL
    child.wait().unwrap();
    (running, seen)
}

/// The command's stdout; fails with its exit status, stdout and stderr unless it succeeded.
pub fn stdout_ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// The `UpsellMessageApproved` details in `<home>/bus-events.jsonl`, by `detail.eventId`, every
/// copy in journal order.
pub fn approvals_on_the_bus(home: &Path) -> BTreeMap<String, Vec<Value>> {
    let journal = std::fs::read_to_string(home.join("bus-events.jsonl")).unwrap();
    let mut announced: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for line in journal.lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        if e["detail-type"] == "UpsellMessageApproved" {
            let id = e["detail"]["eventId"].as_str().unwrap().to_owned();
            announced.entry(id).or_default().push(e["detail"].clone());
        }
    }
    announced
}
