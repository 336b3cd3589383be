//! What `wg list` and `wg show` tell a person: a header, why an open task is not started, log
//! timestamps to the second, and `--tail`.

mod common;

use common::Workgraph;

fn stdout(wg: &Workgraph, args: &[&str]) -> String {
    let output = wg.wg(args);
    assert!(output.status.success(), "wg {args:?}: {}", common::describe(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn list_has_a_header_and_says_why_an_open_task_is_not_started() {
    let wg = Workgraph::fresh();
    wg.wg_json(&["add", "Build", "--id", "build", "--exec", "true"]);
    wg.wg_json(&["add", "Test", "--id", "test", "--after", "build", "--exec", "true"]);
    wg.wg_json(&["add", "Notes", "--id", "notes"]);
    let listed = stdout(&wg, &["list"]);
    let lines: Vec<&str> = listed.lines().collect();
    assert!(lines[0].starts_with("ID") && lines[0].contains("STATUS") && lines[0].ends_with("TITLE"), "{listed}");
    let line_of = |id: &str| lines.iter().find(|line| line.starts_with(id)).copied().unwrap_or_default();
    assert!(!line_of("build").contains('('), "a ready task needs no note: {listed}");
    assert!(line_of("test").ends_with("(waits for build)"), "{listed}");
    assert!(line_of("notes").ends_with("(no --exec: the service never starts it)"), "{listed}");
}

#[test]
fn show_prints_log_times_to_the_second_and_tail_keeps_the_last_entries() {
    let wg = Workgraph::fresh();
    wg.wg_json(&["add", "Build", "--id", "build", "--exec", "true"]);
    wg.wg_json(&["fail", "build", "--reason", "boom"]);
    wg.wg_json(&["retry", "build", "--reason", "again"]);
    let shown = stdout(&wg, &["show", "build"]);
    let entries: Vec<&str> = shown.lines().skip_while(|line| line.trim() != "log:").skip(1).collect();
    assert_eq!(entries.len(), 2, "{shown}");
    for entry in &entries {
        let stamp = entry.split_whitespace().next().unwrap_or_default();
        assert_eq!(stamp.len(), "2026-11-26T04:29:29".len(), "to the second: {entry}");
        assert_eq!(stamp.as_bytes()[10], b'T', "{entry}");
    }
    let tail = stdout(&wg, &["show", "build", "--tail", "1"]);
    assert!(tail.contains("log (1 earlier entries not shown):"), "{tail}");
    assert!(tail.contains("again (attempt 1)") && !tail.contains("boom"), "{tail}");
}
