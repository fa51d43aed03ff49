//! How connections ended, by client category, as the clients saw it.
//!
//! Each role records one outcome per connection it opened (`close 1008`,
//! `dropped`, `left (1000)`, …) and says whether that outcome is what a
//! correct server does to that kind of client; the report lists every
//! outcome with its count, and the unexpected ones make the run fail.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One line of the disconnect table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisconnectRow {
    /// The client category (`well-behaved`, `slow`, `flood-typed`, …).
    pub category: String,
    /// What the client saw (`close 1008`, `dropped`, …).
    pub outcome: String,
    /// How many connections ended so.
    pub count: u64,
    /// Whether a correct server ends this kind of client so.
    pub expected: bool,
    /// The first close reason or error text seen for this outcome.
    pub example: String,
}

/// Outcomes by (category, outcome).
#[derive(Debug, Default)]
pub struct Tally {
    rows: BTreeMap<(String, String), DisconnectRow>,
}

impl Tally {
    /// Counts one connection of `category` that ended with `outcome`.
    pub fn record(&mut self, category: &str, outcome: &str, expected: bool, detail: &str) {
        let row = self
            .rows
            .entry((category.to_owned(), outcome.to_owned()))
            .or_insert_with(|| DisconnectRow {
                category: category.to_owned(),
                outcome: outcome.to_owned(),
                count: 0,
                expected,
                example: truncate(detail, 100),
            });
        row.count += 1;
        row.expected &= expected;
    }

    /// Every row, sorted by category then outcome.
    pub fn rows(&self) -> Vec<DisconnectRow> {
        self.rows.values().cloned().collect()
    }
}

fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Expected outcomes of `category` in `rows`.
pub fn expected_count(rows: &[DisconnectRow], category: &str) -> u64 {
    rows.iter()
        .filter(|r| r.category == category && r.expected)
        .map(|r| r.count)
        .sum()
}

/// Unexpected outcomes in `rows`.
pub fn unexpected(rows: &[DisconnectRow]) -> impl Iterator<Item = &DisconnectRow> {
    rows.iter().filter(|r| !r.expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_add_up_by_category_and_outcome() {
        let mut tally = Tally::default();
        tally.record("slow", "close 1008", true, "slow consumer");
        tally.record("slow", "close 1008", true, "other text");
        tally.record("slow", "not closed", false, "");
        tally.record(
            "binary",
            "close 1003",
            true,
            "binary frames are not supported",
        );
        let rows = tally.rows();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].category, "binary");
        assert_eq!(expected_count(&rows, "slow"), 2);
        assert_eq!(rows[1].example, "slow consumer");
        assert_eq!(unexpected(&rows).count(), 1);
    }
}
