//! A run drawn as a self-contained HTML swimlane timeline (`wg-sim replay ... --html F`).
//!
//! Time runs down the page, one row per step; each actor (the dispatcher, the reaper, each `wg`
//! command, each agent process, and a lane for faults on the world) has a column. A step is a
//! mark in its actor's lane: the port call it ran, coloured by what happened (a commit, a fault,
//! a crash), with what the commit changed written under it and the whole step in the mark's
//! hover text. What happens to an agent process inside another actor's step (spawned by the
//! dispatcher, signalled by a retry, exited) is an event mark in that agent's lane, so an agent
//! that never runs code of its own still has its lifeline. The step after which the invariant was
//! found broken is highlighted and followed by the violation itself. Quiet steps (nothing
//! changed, a sweep found nothing) keep their rows but are hidden until a checkbox shows them.
//! No script, no external resource: the file opens anywhere, offline.
//!
//! The document is well-formed XML (void elements closed, no named entities but XML's), so a
//! test can parse it with an XML parser.

use crate::executor::RunReport;
use crate::junit::escape;
use crate::timeline::{format_tick, StepRecord};
use crate::world::ActorKind;
use std::fmt::Write as _;

/// The lane of world faults (pid reuse, clock jump, stall, TERM ignored): no actor ran them.
pub const FAULT_LANE: &str = "faults";

/// The lanes of `steps`, in order: the service's loops, the `wg` commands, the agents, then the
/// faults lane if any; within each kind, in order of first appearance. An agent seen only in
/// events (`spawn agent-2`) gets a lane named by its id.
pub fn lanes(steps: &[StepRecord]) -> Vec<String> {
    let rank = |kind: Option<ActorKind>| match kind {
        Some(ActorKind::Service) => 0,
        Some(ActorKind::Cli) => 1,
        Some(ActorKind::Agent) => 2,
        None => 3,
    };
    let mut lanes: Vec<(usize, String)> = Vec::new();
    let mut add = |rank: usize, name: String| {
        if !lanes.iter().any(|(_, known)| *known == name) {
            lanes.push((rank, name));
        }
    };
    for step in steps {
        add(rank(step.kind), lane_of(step).to_string());
        for (_, agent) in agent_events(step) {
            add(rank(Some(ActorKind::Agent)), agent_lane(steps, agent));
        }
    }
    // Stable: first appearance within a kind.
    lanes.sort_by_key(|(rank, _)| *rank);
    lanes.into_iter().map(|(_, name)| name).collect()
}

fn lane_of(step: &StepRecord) -> &str {
    step.actor.as_deref().unwrap_or(FAULT_LANE)
}

/// `(what, agent id)` of each `event: spawn|signal|exit agent-N` note of `step`.
pub fn agent_events(step: &StepRecord) -> impl Iterator<Item = (&str, &str)> {
    step.notes.iter().filter_map(|note| {
        let (what, agent) = note.strip_prefix("event: ")?.split_once(' ')?;
        agent.starts_with("agent-").then_some((what, agent))
    })
}

/// The lane of agent `id`: its actor's (`agent-1 exit-after`) if it ran code, else `id`.
fn agent_lane(steps: &[StepRecord], id: &str) -> String {
    steps
        .iter()
        .filter(|step| step.kind == Some(ActorKind::Agent))
        .filter_map(|step| step.actor.as_deref())
        .find(|name| name.split(' ').next() == Some(id))
        .unwrap_or(id)
        .to_string()
}

/// A step that changed nothing worth a look: no fault, no commit, no event, and no result but
/// a sweep that found nothing (`dispatch -> Ok([])`, `reap -> Ok([])`).
pub fn is_quiet(step: &StepRecord) -> bool {
    step.fault.is_none() && step.notes.iter().all(|note| note.ends_with(" -> Ok([])"))
}

/// What a mark shows: its CSS class, most telling first.
fn mark_class(step: &StepRecord) -> &'static str {
    if step.call == "CRASH" {
        "mark crash"
    } else if step.fault.is_some() {
        "mark fault"
    } else if step.notes.iter().any(|note| note.starts_with("commit: ")) {
        "mark commit"
    } else {
        "mark call"
    }
}

fn kind_label(kind: Option<ActorKind>) -> &'static str {
    match kind {
        Some(ActorKind::Service) => "service loop",
        Some(ActorKind::Cli) => "wg command",
        Some(ActorKind::Agent) => "agent process",
        None => "faults on the world",
    }
}

const STYLE: &str = "
body { font: 13px/1.35 system-ui, sans-serif; margin: 16px; color: #1d2330; background: #fff; }
h1 { font-size: 18px; margin: 0 0 6px; }
.verdict { padding: 8px 10px; border-radius: 4px; margin: 6px 0 10px; font-weight: 600; }
.verdict.fail { background: #fde2e1; border: 1px solid #d33; color: #8a1111; }
.verdict.pass { background: #e3f6e5; border: 1px solid #3a3; color: #1b5e20; }
.legend span { display: inline-block; margin-right: 14px; }
.legend .mark { margin-right: 4px; }
table { border-collapse: collapse; table-layout: fixed; }
th.lane { position: sticky; top: 0; background: #f3f5f9; border-bottom: 2px solid #9aa5b8; padding: 6px 4px; text-align: left;
  width: 190px; font-size: 12px; vertical-align: bottom; word-break: break-word; z-index: 1; }
th.lane small { display: block; font-weight: normal; color: #5b6578; }
th.when { position: sticky; top: 0; background: #f3f5f9; border-bottom: 2px solid #9aa5b8; width: 86px; z-index: 1; }
td { padding: 2px 4px; vertical-align: top; border-bottom: 1px solid #eef0f4; }
td.when { font: 11px ui-monospace, monospace; color: #5b6578; white-space: nowrap; }
td.idle { background: linear-gradient(to right, transparent 14px, #cfd5df 14px, #cfd5df 16px, transparent 16px); }
td.act { background: #fbfcfe; box-shadow: inset 2px 0 #8c99ad; }
.mark { display: inline-block; border-radius: 10px; padding: 0 7px; font: 11px ui-monospace, monospace;
  border: 1px solid #8c99ad; background: #eef1f6; cursor: help; }
.event { display: inline-block; margin-left: 20px; padding: 0 6px; border-radius: 3px; font: 10px ui-monospace, monospace;
  background: #efe6fb; border: 1px dashed #7b4bc4; color: #4a2380; cursor: help; }
.mark.commit { background: #dcecff; border-color: #2f6fd0; color: #113d7d; font-weight: 600; }
.mark.fault { background: #fff0d6; border-color: #d98a00; color: #7a4a00; font-weight: 600; }
.mark.crash { background: #3b3b3b; border-color: #000; color: #fff; font-weight: 600; }
.change { font-size: 11px; color: #113d7d; margin-top: 2px; word-break: break-word; }
.note { font-size: 11px; color: #5b6578; margin-top: 1px; word-break: break-word; }
tr.quiet { display: none; }
#show-quiet:checked ~ table tr.quiet { display: table-row; }
.quiet-toggle { font-size: 12px; color: #5b6578; margin-left: 4px; }
#show-quiet { margin: 0 0 8px; vertical-align: middle; }
tr.violated td { background: #fde2e1; }
tr.violated td.act .mark { border: 2px solid #d33; }
tr.violation td { background: #d33; color: #fff; font-weight: 600; padding: 6px 8px; }
";

/// The whole page for `report` (a run recorded with a timeline), titled `title`.
pub fn render(title: &str, report: &RunReport) -> String {
    let lanes = lanes(&report.steps);
    let violated_at = report.failure.as_ref().map(|failure| failure.step.min(report.steps.len().saturating_sub(1)));
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>wg-sim: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(title)
    );
    let _ = writeln!(html, "<h1>wg-sim replay: {}</h1>", escape(title));
    match &report.failure {
        Some(failure) => {
            let _ = writeln!(
                html,
                "<p class=\"verdict fail\">FAIL: {} broken after step {} at {}: {}</p>",
                escape(&failure.checker),
                failure.step,
                format_tick(failure.tick_ms),
                escape(&failure.detail)
            );
        }
        None => {
            let _ =
                writeln!(html, "<p class=\"verdict pass\">ok: every invariant held ({} steps)</p>", report.steps.len());
        }
    }
    html.push_str(
        "<p class=\"legend\"><span><span class=\"mark call\">call</span>a port call</span>\
         <span><span class=\"mark commit\">call</span>a commit (what it changed below)</span>\
         <span><span class=\"mark fault\">call</span>an injected fault</span>\
         <span><span class=\"mark crash\">CRASH</span>the actor died</span>\
         <span><span class=\"event\">exit</span>an agent spawned, signalled or exited by the step</span>\
         <span>Hover a mark for the whole step.</span></p>\n",
    );
    // Quiet steps (a loop woke, called a port, changed nothing) are most of a long run's end;
    // hidden until asked for, by a checkbox and CSS alone (no script).
    let quiet = report.steps.iter().filter(|step| is_quiet(step) && violated_at != Some(step.step)).count();
    if quiet > 0 {
        let _ = writeln!(
            html,
            "<input type=\"checkbox\" id=\"show-quiet\"/><label for=\"show-quiet\" class=\"quiet-toggle\">show the {quiet} \
             quiet steps (a port call that changed nothing, a sweep that found nothing: hidden, so step numbers skip)</label>"
        );
    }
    html.push_str("<table class=\"lanes\">\n<thead><tr><th class=\"when\">step, time</th>");
    for lane in &lanes {
        // A lane no step ran in is an agent seen only in events.
        let kind = match report.steps.iter().find(|step| lane_of(step) == lane) {
            Some(step) => step.kind,
            None => Some(ActorKind::Agent),
        };
        let _ = write!(
            html,
            "<th class=\"lane\" title=\"{}\">{}<small>{}</small></th>",
            escape(lane),
            escape(lane),
            kind_label(kind)
        );
    }
    html.push_str("</tr></thead>\n<tbody>\n");
    for step in &report.steps {
        render_row(&mut html, step, &report.steps, &lanes, violated_at == Some(step.step));
        if violated_at == Some(step.step) {
            if let Some(failure) = &report.failure {
                let _ = writeln!(
                    html,
                    "<tr class=\"violation\" id=\"violation\"><td colspan=\"{}\">!! {}: {}</td></tr>",
                    lanes.len() + 1,
                    escape(&failure.checker),
                    escape(&failure.detail)
                );
            }
        }
    }
    html.push_str("</tbody>\n</table>\n</body>\n</html>\n");
    html
}

fn render_row(html: &mut String, step: &StepRecord, steps: &[StepRecord], lanes: &[String], violated: bool) {
    let class = match (violated, is_quiet(step)) {
        (true, _) => " class=\"step violated\"",
        (false, true) => " class=\"step quiet\"",
        (false, false) => " class=\"step\"",
    };
    let _ = write!(
        html,
        "<tr{class} id=\"step-{}\"><td class=\"when\">#{} {}</td>",
        step.step,
        step.step,
        format_tick(step.tick_ms)
    );
    let events: Vec<(&str, String)> =
        agent_events(step).map(|(what, agent)| (what, agent_lane(steps, agent))).collect();
    for lane in lanes {
        if lane != lane_of(step) {
            let here: Vec<&str> = events.iter().filter(|(_, to)| to == lane).map(|(what, _)| *what).collect();
            if here.is_empty() {
                html.push_str("<td class=\"idle\"></td>");
            } else {
                html.push_str("<td class=\"idle\">");
                for what in here {
                    let _ = write!(
                        html,
                        "<span class=\"event\" data-step=\"{}\" title=\"step {}: {} by {}\">{}</span>",
                        step.step,
                        step.step,
                        escape(what),
                        escape(lane_of(step)),
                        escape(what)
                    );
                }
                html.push_str("</td>");
            }
            continue;
        }
        let _ = write!(
            html,
            "<td class=\"act\"><span class=\"{}\" data-step=\"{}\" title=\"{}\">{}</span>",
            mark_class(step),
            step.step,
            escape(&step.line()),
            escape(&step.call)
        );
        if let Some(fault) = &step.fault {
            let _ = write!(html, "<div class=\"note\">{}</div>", escape(fault));
        }
        for note in &step.notes {
            match note.strip_prefix("commit: ") {
                Some(change) => {
                    let _ = write!(html, "<div class=\"change\">{}</div>", escape(change));
                }
                None => {
                    let _ = write!(html, "<div class=\"note\">{}</div>", escape(note));
                }
            }
        }
        html.push_str("</td>");
    }
    html.push_str("</tr>\n");
}
