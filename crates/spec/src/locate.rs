//! The locate phase: finds where a field path was written (the YAML line of block-style
//! source, or the `--set` that set it), so errors found after parsing still point at a line.
//! Best effort: falls back to the nearest parent.

use crate::error::{Location, SpecError};
use crate::overrides::Override;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// Parses a dotted path such as `model.layers[3].out` into segments. A part made of digits
/// alone after the first is an index too: `model.layers.3.out` is the same path.
pub fn parse_path(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(b) = rest.find('[') {
            if b > 0 {
                out.push(Segment::Key(rest[..b].to_string()));
            }
            rest = &rest[b..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(e) = stripped.find(']') else { break };
                if let Ok(i) = stripped[..e].parse() {
                    out.push(Segment::Index(i));
                }
                rest = &stripped[e + 1..];
            }
        } else if !out.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
            match rest.parse() {
                Ok(i) => out.push(Segment::Index(i)),
                Err(_) => out.push(Segment::Key(rest.to_string())),
            }
        } else if !rest.is_empty() {
            out.push(Segment::Key(rest.to_string()));
        }
    }
    out
}

/// Writes segments as a path in the form errors use: `model.layers[3].out`.
pub fn render_path(segments: &[Segment]) -> String {
    let mut out = String::new();
    for s in segments {
        match s {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

struct Line<'a> {
    text: &'a str,
    /// Column of the first non-space character.
    first: usize,
    /// Column of a leading `- ` dash, if any.
    dash: Option<usize>,
    /// A block key on this line (after any dashes) and its column.
    key: Option<(String, usize)>,
}

fn strip_quotes(k: &str) -> &str {
    k.trim_matches(|c| c == '"' || c == '\'')
}

fn parse_line(text: &str) -> Option<Line<'_>> {
    let first = text.len() - text.trim_start().len();
    let body = &text[first..];
    if body.is_empty() || body.starts_with('#') {
        return None;
    }
    let mut col = first;
    let mut rest = body;
    let mut dash = None;
    while rest.starts_with("- ") || rest == "-" {
        if dash.is_none() {
            dash = Some(col);
        }
        let trimmed = rest[1..].trim_start();
        col += rest.len() - trimmed.len();
        rest = trimmed;
    }
    let key = if rest.starts_with('{') || rest.starts_with('[') {
        None
    } else {
        rest.find(": ")
            .or_else(|| rest.strip_suffix(':').map(|s| s.len()))
            .map(|e| (strip_quotes(rest[..e].trim()).to_string(), col))
    };
    Some(Line {
        text,
        first,
        dash,
        key,
    })
}

fn line_in_flow(text: &str, key: &str) -> Option<usize> {
    for pat in [format!("{{{key}:"), format!(" {key}:"), format!(",{key}:")] {
        if let Some(p) = text.find(&pat) {
            return Some(p + pat.len() - key.len() - 1);
        }
    }
    None
}

/// Returns the 1-based (line, column) where `path` is written in `src`, or the closest
/// parent that could be found; None when not even the first key is present.
pub fn locate(src: &str, path: &[Segment]) -> Option<(usize, usize)> {
    let lines: Vec<(usize, Line)> = src
        .lines()
        .enumerate()
        .filter_map(|(i, t)| parse_line(t).map(|l| (i, l)))
        .collect();
    // Region: indices into `lines`: [start, end); `first_line_included` says whether the
    // region's first line holds children (list item) or is the parent key line itself.
    let (mut start, mut end) = (0usize, lines.len());
    let mut found: Option<(usize, usize)> = None;
    for seg in path {
        match seg {
            Segment::Key(k) => {
                let min_col = lines[start..end]
                    .iter()
                    .filter_map(|(_, l)| l.key.as_ref().map(|(_, c)| *c))
                    .min();
                let hit = lines[start..end].iter().position(
                    |(_, l)| matches!(&l.key, Some((name, c)) if name == k && Some(*c) == min_col),
                );
                match hit {
                    Some(p) => {
                        let idx = start + p;
                        let (line_no, l) = &lines[idx];
                        let col = l.key.as_ref().map(|(_, c)| *c).unwrap_or(l.first);
                        found = Some((line_no + 1, col + 1));
                        let mut e = idx + 1;
                        while e < end {
                            let nl = &lines[e].1;
                            let inside = nl.first > col || (nl.first == col && nl.dash.is_some());
                            if !inside {
                                break;
                            }
                            e += 1;
                        }
                        if e == idx + 1 {
                            // Value on the same line (scalar or flow): look there for the rest.
                            return flow_rest(&lines[idx].1, found, path, seg);
                        }
                        start = idx + 1;
                        end = e;
                    }
                    None => {
                        if let Some((ln, l)) = lines.get(start) {
                            if let Some(c) = line_in_flow(l.text, k) {
                                return Some((ln + 1, c + 1));
                            }
                        }
                        return found;
                    }
                }
            }
            Segment::Index(n) => {
                let dash_col = lines[start..end].iter().filter_map(|(_, l)| l.dash).min();
                let Some(dc) = dash_col else { return found };
                let items: Vec<usize> = (start..end)
                    .filter(|&i| lines[i].1.dash == Some(dc))
                    .collect();
                let Some(&idx) = items.get(*n) else {
                    return found;
                };
                found = Some((lines[idx].0 + 1, dc + 1));
                let mut e = idx + 1;
                while e < end && lines[e].1.first > dc {
                    e += 1;
                }
                start = idx;
                end = e;
                // Children of a list item: the keys after the dash on its first line and the
                // deeper lines below. Strip the dash so key columns line up.
            }
        }
    }
    found
}

fn flow_rest(
    line: &Line,
    found: Option<(usize, usize)>,
    path: &[Segment],
    current: &Segment,
) -> Option<(usize, usize)> {
    // Find the segments after `current` and look for the last key of them on this line.
    let pos = path.iter().position(|s| s == current).unwrap_or(path.len());
    let (line_no, _) = found?;
    for seg in path[pos + 1..].iter().rev() {
        if let Segment::Key(k) = seg {
            if let Some(c) = line_in_flow(line.text, k) {
                return Some((line_no, c + 1));
            }
        }
    }
    found
}

/// Turns field paths into [`Location`]s for one spec text and its overrides; every phase after
/// parsing reports its errors through it.
#[derive(Debug, Clone, Copy)]
pub struct Locator<'a> {
    src: &'a str,
    file: &'a str,
    overrides: &'a [Override],
}

impl<'a> Locator<'a> {
    /// In: the spec text, its file name and the `--set` overrides applied to it.
    pub fn new(src: &'a str, file: &'a str, overrides: &'a [Override]) -> Self {
        Locator {
            src,
            file,
            overrides,
        }
    }

    /// Out: where the value of `field` (a dotted path) came from.
    pub fn location(&self, field: &str) -> Location {
        // An override that set this field (or a parent/child of it) is where the value came from.
        if let Some(o) = self.overrides.iter().rev().find(|o| {
            field == o.path
                || field.starts_with(&format!("{}.", o.path))
                || field.starts_with(&format!("{}[", o.path))
                || o.path.starts_with(&format!("{field}."))
                || o.path.starts_with(&format!("{field}["))
        }) {
            return Location {
                file: format!("--set {}", o.arg),
                line: None,
                column: None,
            };
        }
        let (line, column) = match locate(self.src, &parse_path(field)) {
            Some((l, c)) => (Some(l), Some(c)),
            None => (None, None),
        };
        Location {
            file: self.file.to_string(),
            line,
            column,
        }
    }

    /// The error saying `message` about `field`, at the field's location.
    pub fn field_error(&self, field: &str, message: String) -> SpecError {
        SpecError::Field {
            at: self.location(field),
            field: field.to_string(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "\
name: demo
model:
  # comment
  wrn:
    depth: 27
    width: 4
  input: [3, 32, 32]
data:
  augment: {crop: {padding: 4}, flip: true}
train:
  schedule:
    kind: multistep
  epochs: 3
layers_demo:
  layers:
  - op: conv
    out: 16
  - {op: relu, name: r}
  - op: add
    from: [a, b]
";

    fn at(p: &str) -> Option<(usize, usize)> {
        locate(SRC, &parse_path(p))
    }

    #[test]
    fn finds_block_keys() {
        assert_eq!(at("model.wrn.depth"), Some((5, 5)));
        assert_eq!(at("model.wrn.width"), Some((6, 5)));
        assert_eq!(at("model.input"), Some((7, 3)));
        assert_eq!(at("train.epochs"), Some((13, 3)));
        assert_eq!(at("train.schedule.kind"), Some((12, 5)));
    }

    #[test]
    fn finds_list_items_and_flow_keys() {
        assert_eq!(at("layers_demo.layers[0].out"), Some((17, 5)));
        assert_eq!(at("layers_demo.layers[1]"), Some((18, 3)));
        assert_eq!(at("layers_demo.layers[1].name"), Some((18, 16)));
        assert_eq!(at("layers_demo.layers[2].from"), Some((20, 5)));
        assert_eq!(at("data.augment.flip"), Some((9, 33)));
    }

    #[test]
    fn falls_back_to_parent() {
        assert_eq!(at("model.wrn.nothere"), Some((4, 3)));
        assert_eq!(at("nothing.at.all"), None);
    }

    #[test]
    fn parses_paths() {
        assert_eq!(
            parse_path("a.b[2].c"),
            vec![
                Segment::Key("a".into()),
                Segment::Key("b".into()),
                Segment::Index(2),
                Segment::Key("c".into())
            ]
        );
        assert_eq!(parse_path("a.b.2.c"), parse_path("a.b[2].c"));
        assert_eq!(render_path(&parse_path("a.b.2.c")), "a.b[2].c");
        assert_eq!(
            render_path(&parse_path("model.wrn.depth")),
            "model.wrn.depth"
        );
    }
}
