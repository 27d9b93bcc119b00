//! The committed authorisation table, `server/tests/fixtures/authz.csv`:
//! parsing, wildcard expansion, and the rule that makes it a table rather than
//! a list of examples: **every cell is covered by exactly one row**.
//!
//! One copy serves both checks: the pure policy check in
//! `server/src/chat/policy.rs` includes this file with `#[path]`, and the
//! socket harness (`server/tests/authz.rs`) includes it from `common`. So it
//! uses only std and `app::protocol`, never `crate::` or `server::` paths.
//!
//! Format, one row per line: `action,kind,standing,transport,expected`. A `#`
//! starts a comment (whole line or after a row); blank lines are skipped;
//! white space around fields is ignored; `*` in `kind`, `standing` or
//! `transport` stands for every value of that column.

use app::protocol::ErrorCode;
use serde::Deserialize;
use std::{collections::BTreeMap, fmt};

/// The values each column may take.
pub struct Universe {
    pub actions: &'static [&'static str],
    pub kinds: &'static [&'static str],
    pub standings: &'static [&'static str],
    pub transports: &'static [&'static str],
}

/// Issue 11's vocabulary (plan v2 §5.1). Issue 12 adds the `invited` and
/// `removed` standings.
pub const V2: Universe = Universe {
    actions: &[
        "history",
        "around",
        "preview_page",
        "open",
        "resume",
        "post",
        "join",
        "leave",
        "rename",
        "set_topic",
        "mark_read",
        "typing",
        "members",
        "directory",
        "room_page",
        "create_room",
    ],
    kinds: &["public", "private", "dm", "missing"],
    standings: &["signed_out", "outsider", "member", "owner", "banned"],
    transports: &["ws", "fn", "page"],
};

/// One cell of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cell {
    pub action: &'static str,
    pub kind: &'static str,
    pub standing: &'static str,
    pub transport: &'static str,
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Cell {
            action,
            kind,
            standing,
            transport,
        } = self;
        write!(f, "{action},{kind},{standing},{transport}")
    }
}

/// What one cell expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// `ok`: done, in full.
    Ok,
    /// `preview`: shown as to someone who has not joined: the Join bar (or,
    /// for a banned user, no bar) and no composer; `role: null` over `fn`.
    Preview,
    /// `sign_in`: the page shows the sign-in form.
    SignIn,
    /// `listed`: the directory lists the room.
    Listed,
    /// `hidden`: the directory does not list the room, nor count it.
    Hidden,
    /// `n/a`: the transport does not offer the action, or no fixture can
    /// build the cell (a DM has no owner).
    NotOffered,
    /// An error code, spelled as on the wire (`not_found`, `unauthorized`, …).
    Error(ErrorCode),
}

/// A parsed, complete table.
#[derive(Debug)]
pub struct Table {
    /// Every cell of the universe, with what it expects.
    pub cells: BTreeMap<Cell, Expected>,
    /// How many rows (not comments) the file has.
    pub rows: usize,
}

/// Parses `text` over `universe`. Fails, listing every problem with its line
/// number, on a malformed row, an unknown value, two rows covering one cell,
/// or a cell no row covers.
pub fn parse(text: &str, universe: &Universe) -> Result<Table, Vec<String>> {
    let mut errors = Vec::new();
    // cell -> (expected, line that set it)
    let mut seen: BTreeMap<Cell, (Expected, usize)> = BTreeMap::new();
    let mut rows = 0;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let row = raw.split('#').next().unwrap_or_default().trim();
        if row.is_empty() {
            continue;
        }
        rows += 1;
        let fields: Vec<&str> = row.split(',').map(str::trim).collect();
        let &[action, kind, standing, transport, expected] = fields.as_slice() else {
            errors.push(format!(
                "line {line}: {} fields, expected 5 (action,kind,standing,transport,expected): `{row}`",
                fields.len()
            ));
            continue;
        };
        let columns = (
            column("action", action, universe.actions, false),
            column("kind", kind, universe.kinds, true),
            column("standing", standing, universe.standings, true),
            column("transport", transport, universe.transports, true),
            parse_expected(expected),
        );
        let (actions, kinds, standings, transports, expected) = match columns {
            (Ok(a), Ok(k), Ok(s), Ok(t), Ok(e)) => (a, k, s, t, e),
            (a, k, s, t, e) => {
                for problem in [a.err(), k.err(), s.err(), t.err(), e.err()]
                    .into_iter()
                    .flatten()
                {
                    errors.push(format!("line {line}: {problem}"));
                }
                continue;
            }
        };
        for &action in &actions {
            for &kind in &kinds {
                for &standing in &standings {
                    for &transport in &transports {
                        let cell = Cell {
                            action,
                            kind,
                            standing,
                            transport,
                        };
                        match seen.get(&cell) {
                            Some(&(_, first)) => errors.push(format!(
                                "line {line}: overlap: {cell} is already covered by line {first}"
                            )),
                            None => {
                                seen.insert(cell, (expected, line));
                            }
                        }
                    }
                }
            }
        }
    }
    let mut uncovered = Vec::new();
    for &action in universe.actions {
        for &kind in universe.kinds {
            for &standing in universe.standings {
                for &transport in universe.transports {
                    let cell = Cell {
                        action,
                        kind,
                        standing,
                        transport,
                    };
                    if !seen.contains_key(&cell) {
                        uncovered.push(cell);
                    }
                }
            }
        }
    }
    if !uncovered.is_empty() {
        const SHOWN: usize = 20;
        let list: Vec<String> = uncovered.iter().take(SHOWN).map(Cell::to_string).collect();
        let more = uncovered.len().saturating_sub(SHOWN);
        errors.push(format!(
            "uncovered: {} cells: {}{}",
            uncovered.len(),
            list.join("; "),
            if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            }
        ));
    }
    if errors.is_empty() {
        Ok(Table {
            cells: seen.into_iter().map(|(cell, (e, _))| (cell, e)).collect(),
            rows,
        })
    } else {
        Err(errors)
    }
}

/// The values one field stands for: itself, or all of them for `*`.
fn column(
    name: &str,
    value: &str,
    values: &'static [&'static str],
    wildcard: bool,
) -> Result<Vec<&'static str>, String> {
    if value == "*" {
        return if wildcard {
            Ok(values.to_vec())
        } else {
            Err(format!("`*` is not allowed in the {name} column"))
        };
    }
    values
        .iter()
        .find(|v| **v == value)
        .map(|v| vec![*v])
        .ok_or_else(|| format!("unknown {name} `{value}` (one of: {})", values.join(", ")))
}

fn parse_expected(value: &str) -> Result<Expected, String> {
    Ok(match value {
        "ok" => Expected::Ok,
        "preview" => Expected::Preview,
        "sign_in" => Expected::SignIn,
        "listed" => Expected::Listed,
        "hidden" => Expected::Hidden,
        "n/a" => Expected::NotOffered,
        code => Expected::Error(
            ErrorCode::deserialize(serde::de::value::StrDeserializer::<
                serde::de::value::Error,
            >::new(code))
            .map_err(|_| {
                format!(
                    "unknown expected `{code}` (ok, preview, sign_in, listed, hidden, n/a, or an error code)"
                )
            })?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Universe = Universe {
        actions: &["read", "write"],
        kinds: &["open", "shut"],
        standings: &["in", "out"],
        transports: &["ws", "fn"],
    };

    fn errors(text: &str) -> String {
        parse(text, &SMALL).expect_err("should fail").join("\n")
    }

    #[test]
    fn wildcards_expand_to_every_value_and_comments_are_skipped() {
        let table = parse(
            "# a comment\n\
             read,  *,    *,   *,  ok   # all eight read cells\n\
             \n\
             write, open, in,  *,  ok\n\
             write, open, out, ws, not_member\n\
             write, open, out, fn, n/a\n\
             write, shut, *,   *,  not_found\n",
            &SMALL,
        )
        .unwrap();
        assert_eq!(table.rows, 5);
        assert_eq!(table.cells.len(), 16);
        let at = |action, kind, standing, transport| {
            table.cells[&Cell {
                action,
                kind,
                standing,
                transport,
            }]
        };
        assert_eq!(at("read", "shut", "out", "fn"), Expected::Ok);
        assert_eq!(
            at("write", "open", "out", "ws"),
            Expected::Error(ErrorCode::NotMember)
        );
        assert_eq!(at("write", "open", "out", "fn"), Expected::NotOffered);
        assert_eq!(
            at("write", "shut", "in", "ws"),
            Expected::Error(ErrorCode::NotFound)
        );
    }

    #[test]
    fn two_rows_covering_one_cell_fail() {
        let e = errors(
            "read,  *,    *,  *,  ok\n\
             write, *,    *,  *,  ok\n\
             write, shut, in, fn, not_found\n",
        );
        assert!(
            e.contains("line 3: overlap: write,shut,in,fn is already covered by line 2"),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1, "{e}");
    }

    #[test]
    fn a_cell_no_row_covers_fails() {
        let e = errors(
            "read,  *,    *,   *,  ok\n\
             write, open, *,   *,  ok\n\
             write, shut, in,  *,  ok\n\
             write, shut, out, ws, ok\n",
        );
        assert!(e.contains("uncovered: 1 cells: write,shut,out,fn"), "{e}");
    }

    #[test]
    fn a_missing_action_is_reported_cell_by_cell() {
        let e = errors("read, *, *, *, ok\n");
        assert!(
            e.starts_with("uncovered: 8 cells: write,open,in,ws;"),
            "{e}"
        );
    }

    #[test]
    fn malformed_rows_fail_with_their_line() {
        let e = errors(
            "read, *, *, *\n\
             *, open, in, ws, ok\n\
             read, ajar, in, ws, ok\n\
             read, open, in, ws, maybe\n\
             read, open, in, ws, ok, extra\n",
        );
        assert!(e.contains("line 1: 4 fields"), "{e}");
        assert!(
            e.contains("line 2: `*` is not allowed in the action column"),
            "{e}"
        );
        assert!(e.contains("line 3: unknown kind `ajar`"), "{e}");
        assert!(e.contains("line 4: unknown expected `maybe`"), "{e}");
        assert!(e.contains("line 5: 6 fields"), "{e}");
    }

    #[test]
    fn the_committed_table_is_complete() {
        let text = include_str!("../fixtures/authz.csv");
        let table = parse(text, &V2).unwrap_or_else(|e| panic!("{}", e.join("\n")));
        assert_eq!(table.cells.len(), 16 * 4 * 5 * 3);
    }
}
