//! The benchmarks of an earlier report, kept when a run measures only some of them: from
//! its JSON (each benchmark's figures, section and targets as rendered when it ran), or,
//! for a benchmark the JSON does not hold, its section and target rows copied from the
//! report's Markdown as they stand.

use std::path::Path;

use crate::report::{title, Ran, Target};
use crate::BENCHMARKS;

/// The earlier report's benchmarks (`out` and its `json`), in the report's order.
pub fn previous(out: &Path, json: &Path) -> Vec<Ran> {
    #[derive(serde::Deserialize)]
    struct Json {
        benchmarks: Vec<Ran>,
    }
    let text = std::fs::read_to_string(json).unwrap_or_default();
    let mut kept: Vec<Ran> = serde_json::from_str::<Json>(&text).map_or_else(|_| Vec::new(), |j| j.benchmarks);
    kept.retain(|b| !b.section.is_empty());
    let markdown = std::fs::read_to_string(out).unwrap_or_default();
    let missing: Vec<&str> = BENCHMARKS.iter().copied().filter(|n| !kept.iter().any(|b| b.name == *n)).collect();
    kept.extend(missing.into_iter().filter_map(|name| from_markdown(&markdown, name)));
    kept.sort_by_key(|b| BENCHMARKS.iter().position(|n| *n == b.name));
    kept
}

/// The text under the heading `## title` up to the next `## `.
fn under<'a>(markdown: &'a str, title: &str) -> Option<&'a str> {
    let heading = format!("\n## {title}\n");
    let start = markdown.find(&heading)? + heading.len();
    let rest = &markdown[start..];
    Some(rest.find("\n## ").map_or(rest, |end| &rest[..end]))
}

/// Benchmark `name`'s section and target rows in a report's Markdown.
fn from_markdown(markdown: &str, name: &str) -> Option<Ran> {
    let title = title(name);
    let section = under(markdown, &title)?.trim().to_owned();
    let number = title.split_once(". ").map(|(n, _)| format!("{n}. "))?;
    let cells = |line: &str| -> Vec<String> {
        line.trim().trim_matches('|').split(" | ").map(|c| c.trim().to_owned()).collect()
    };
    let targets = under(markdown, "The issue's targets")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("| ")?.strip_prefix(number.as_str()).map(|_| cells(l)))
        .filter(|c| c.len() == 4)
        .map(|c| Target {
            benchmark: name.to_owned(),
            what: c[0].trim_start_matches(&number).to_owned(),
            target: c[1].clone(),
            measured: c[2].clone(),
            met: match c[3].trim() {
                "met" => Some(true),
                "**missed**" => Some(false),
                _ => None,
            },
        })
        .collect();
    let date = under(markdown, "Machine and setup")
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("| date | ")?.strip_suffix(" |").map(str::to_owned)))
        .unwrap_or_default();
    let copied_from = Some(format!("the report of {date}"));
    Some(Ran { name: name.to_owned(), took_s: 0.0, date, figures: None, error: None, section, targets, copied_from })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_and_targets_come_from_the_markdown() {
        let md = "# Benchmarks\n\n## The issue's targets\n\n| what | target | measured |  |\n| --- | --- | --- | --- |\n\
                  | 4. reconnect (p50) | ≤ 1.5 s | 0.44 s | met |\n| 5. relay PSS | ≤ 200 MB | 239 MB | **missed** |\n\n\
                  ## Machine and setup\n\n| date | 2026-12-01 20:04 UTC |\n\n## 4. Recovery\n\nRounds: 20.\n\n## 5. Relay\n\nIdle.\n";
        let r = from_markdown(md, "recovery").unwrap();
        assert_eq!((r.section.as_str(), r.date.as_str()), ("Rounds: 20.", "2026-12-01 20:04 UTC"));
        assert_eq!(r.targets.len(), 1);
        assert_eq!((r.targets[0].what.as_str(), r.targets[0].met), ("reconnect (p50)", Some(true)));
        let relay = from_markdown(md, "relay").unwrap();
        assert_eq!((relay.section.as_str(), relay.targets[0].met), ("Idle.", Some(false)));
        assert!(from_markdown(md, "start").is_none());
    }
}
