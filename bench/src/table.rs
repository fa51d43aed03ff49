//! The tables chat-bench prints, drawn by `comfy-table`: a report's figures
//! as aligned key/value rows, grids with a header, and the comparison as a
//! Markdown table.

use comfy_table::{CellAlignment, ContentArrangement, Table, presets};

/// A table without borders, columns separated by two spaces, content never
/// wrapped (reports go to files and pipes as often as to terminals).
fn plain() -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled);
    table
}

/// `title`, then `rows` as two aligned columns indented by two spaces.
pub fn key_values<K: AsRef<str>>(
    title: &str,
    rows: impl IntoIterator<Item = (K, String)>,
) -> String {
    let mut table = plain();
    for (key, value) in rows {
        table.add_row(vec![key.as_ref().to_owned(), value]);
    }
    indent(title, &table)
}

/// `title`, then `rows` under `header`, indented; the columns numbered in
/// `right` are aligned right (figures).
pub fn grid(title: &str, header: &[&str], rows: Vec<Vec<String>>, right: &[usize]) -> String {
    let mut table = plain();
    table.set_header(header.to_vec()).add_rows(rows);
    align_right(&mut table, right);
    indent(title, &table)
}

/// A Markdown table: `header`, then `rows`; the columns numbered in `right`
/// are aligned right (their separator ends in a colon).
pub fn markdown(header: &[String], rows: Vec<Vec<String>>, right: &[usize]) -> String {
    let mut table = Table::new();
    table
        .load_preset(presets::ASCII_MARKDOWN)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec())
        .add_rows(rows);
    align_right(&mut table, right);
    let mut out = String::new();
    for (i, line) in table.lines().enumerate() {
        // comfy-table draws the separator without alignment colons.
        if i == 1 {
            out.push_str(&separator_with_colons(&line, right));
        } else {
            out.push_str(line.trim_end());
        }
        out.push('\n');
    }
    out
}

fn align_right(table: &mut Table, right: &[usize]) {
    for &column in right {
        if let Some(column) = table.column_mut(column) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// `|-----|-----|` with the last dash of each right-aligned column turned
/// into a colon: `|-----|----:|`.
fn separator_with_colons(line: &str, right: &[usize]) -> String {
    let mut out = String::with_capacity(line.len());
    let mut column = 0;
    let mut chars = line.trim_end().chars().peekable();
    let mut started = false;
    while let Some(c) = chars.next() {
        if c == '|' {
            if started {
                column += 1;
            }
            started = true;
            out.push(c);
        } else if c == '-' && chars.peek() == Some(&'|') && right.contains(&column) {
            out.push(':');
        } else {
            out.push(c);
        }
    }
    out
}

/// `title` and the table's lines below it, indented by two spaces, each
/// without trailing blanks.
fn indent(title: &str, table: &Table) -> String {
    let mut out = format!("{title}\n");
    for line in table.lines() {
        // The first column's one-space padding gives way to the indent.
        out.push_str("  ");
        out.push_str(line.strip_prefix(' ').unwrap_or(&line).trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_align_their_values() {
        let text = key_values("t", [("a", "1".to_owned()), ("long key", "2".to_owned())]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "t");
        assert_eq!(lines[1].find('1'), lines[2].find('2'), "{text}");
        assert!(lines[1].starts_with("  a"), "{text}");
    }

    #[test]
    fn markdown_marks_right_aligned_columns() {
        let header = vec!["name".to_owned(), "figure".to_owned()];
        let text = markdown(&header, vec![vec!["x".into(), "12".into()]], &[1]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("| name"), "{text}");
        assert!(
            lines[1].starts_with("|-") && lines[1].ends_with(":|"),
            "{text}"
        );
        assert!(!lines[1][..lines[1].len() - 2].contains(':'), "{text}");
        assert!(lines[2].ends_with(" 12 |"), "{text}");
    }
}
