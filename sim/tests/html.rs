//! `wg-sim replay --html`: the page is parsed back and checked against the run it draws: a lane
//! per actor (and per agent seen only in events), a mark per step in its actor's lane, an event
//! mark per agent event, the violated step highlighted and followed by the violation.

mod common;

use common::{load, scenarios_folder};
use std::collections::BTreeSet;
use std::path::Path;
use wg_sim::executor::{self, RunOptions, RunReport};
use wg_sim::{html, scenario};

fn run_with_timeline(scenario: &scenario::Scenario, seed: u64) -> RunReport {
    executor::run(scenario, &RunOptions { record_timeline: true, ..RunOptions::for_scenario(scenario, seed) })
}

/// The cells of a row, in lane order (the first cell is the step and time).
fn cells<'a>(row: roxmltree::Node<'a, 'a>) -> Vec<roxmltree::Node<'a, 'a>> {
    row.children().filter(|node| node.has_tag_name("td")).collect()
}

fn class_of<'a>(node: &roxmltree::Node<'a, '_>) -> &'a str {
    node.attribute("class").unwrap_or("")
}

fn check_page(report: &RunReport) -> String {
    let page = html::render("test", report);
    // `<!DOCTYPE html>` is a DTD to an XML parser: allowed, it declares nothing.
    let options = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    let document =
        roxmltree::Document::parse_with_options(&page, options).unwrap_or_else(|e| panic!("well-formed: {e}\n{page}"));
    assert!(!page.contains("src=") && !page.contains("href="), "self-contained: no external resource");

    let lanes: Vec<String> = document
        .descendants()
        .filter(|node| node.has_tag_name("th") && class_of(node) == "lane")
        .map(|node| node.attribute("title").unwrap().to_string())
        .collect();
    let actors: BTreeSet<&str> = report.steps.iter().map(|step| step.actor.as_deref().unwrap_or("faults")).collect();
    for actor in &actors {
        assert!(lanes.iter().any(|lane| lane == actor), "a lane for {actor}: {lanes:?}");
    }
    assert_eq!(lanes.len(), BTreeSet::from_iter(&lanes).len(), "one lane per actor: {lanes:?}");

    let rows: Vec<roxmltree::Node> =
        document.descendants().filter(|node| node.has_tag_name("tr") && class_of(node).starts_with("step")).collect();
    assert_eq!(rows.len(), report.steps.len(), "a row per step");
    let mut events = 0;
    for (row, step) in rows.iter().zip(&report.steps) {
        let cells = cells(*row);
        assert_eq!(cells.len(), lanes.len() + 1, "a cell per lane");
        let marks: Vec<usize> = (1..cells.len())
            .filter(|&i| cells[i].descendants().any(|node| class_of(&node).starts_with("mark")))
            .collect();
        let lane = step.actor.as_deref().unwrap_or("faults");
        assert_eq!(
            marks,
            vec![lanes.iter().position(|l| l == lane).unwrap() + 1],
            "step {}: one mark, in {lane}",
            step.step
        );
        let mark = cells[marks[0]].descendants().find(|node| class_of(node).starts_with("mark")).unwrap();
        assert_eq!(mark.attribute("title"), Some(step.line().as_str()), "the hover text is the whole step");
        let commits = step.notes.iter().filter(|note| note.starts_with("commit: ")).count();
        let changes = cells[marks[0]].descendants().filter(|node| class_of(node) == "change").count();
        assert_eq!(changes, commits, "step {}: each commit annotated", step.step);
        if step.fault.is_some() {
            assert!(class_of(&mark).contains("fault") || class_of(&mark).contains("crash"), "step {}", step.step);
        }
        events += row.descendants().filter(|node| class_of(node) == "event").count();
    }
    let agent_events = report.steps.iter().flat_map(html::agent_events).count();
    let own_lane_events = report
        .steps
        .iter()
        .flat_map(|step| {
            html::agent_events(step)
                .filter(move |(_, agent)| step.actor.as_deref().is_some_and(|a| a.split(' ').next() == Some(*agent)))
        })
        .count();
    assert_eq!(events, agent_events - own_lane_events, "an event mark per agent event in another actor's step");

    // Quiet steps are hidden by CSS, not left out: every step keeps its row.
    for (row, step) in rows.iter().zip(&report.steps) {
        let hidden = class_of(row).contains("quiet");
        let violated_here = report.failure.as_ref().is_some_and(|failure| failure.step == step.step);
        assert_eq!(hidden, html::is_quiet(step) && !violated_here, "step {}", step.step);
    }
    let violated: Vec<&roxmltree::Node> = rows.iter().filter(|row| class_of(row).contains("violated")).collect();
    match &report.failure {
        Some(failure) => {
            assert_eq!(violated.len(), 1);
            assert_eq!(violated[0].attribute("id"), Some(format!("step-{}", failure.step).as_str()));
            let next = violated[0].next_sibling_element().expect("the violation row follows");
            assert_eq!(next.attribute("id"), Some("violation"));
            let text: String = next.descendants().filter_map(|node| node.text()).collect();
            assert!(text.contains(&failure.checker) && text.contains(&failure.detail), "{text}");
        }
        None => assert!(violated.is_empty()),
    }
    page
}

#[test]
fn a_passing_run_is_drawn_lane_by_lane_and_step_by_step() {
    let report = run_with_timeline(&load("kill_reaper_respawn"), 3);
    assert!(report.failure.is_none());
    let page = check_page(&report);
    assert!(page.contains("class=\"verdict pass\""));
    assert!(page.contains("class=\"event\""), "the respawned agent's spawn is drawn in its lane");
}

#[test]
fn a_failing_run_highlights_the_violated_step_and_shows_faults() {
    // retry_vs_reaper with an expectation every run breaks; seeds with a crash or another
    // fault draw fault marks too.
    let text = std::fs::read_to_string(scenarios_folder().join("retry_vs_reaper.toml")).unwrap();
    let right = "always = [\"t1.retry_count != 0\"";
    assert!(text.contains(right), "retry_vs_reaper.toml still holds the expectation this test breaks");
    let text = text.replace(right, "always = [\"t1.retry_count = 7\"");
    let scenario = scenario::parse_str(Path::new("retry_vs_reaper_wrong.toml"), &text).unwrap();
    let mut saw_fault = false;
    for seed in 0..40 {
        let report = run_with_timeline(&scenario, seed);
        assert!(report.failure.is_some(), "the wrong expectation fails every seed");
        saw_fault |= report.steps.iter().any(|step| step.fault.is_some());
        check_page(&report);
    }
    assert!(saw_fault, "some seed injected a fault, so fault marks were checked");
}
