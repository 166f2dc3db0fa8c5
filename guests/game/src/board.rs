//! The Connect Four board: 6 rows by 7 columns, pieces drop to the lowest free cell of a
//! column, four in a row (horizontal, vertical or diagonal) wins.
//!
//! Pure data and rules, no host calls, so it is tested natively. Row 0 is the top row and
//! row 5 the bottom one, which is how the page draws it.

use serde::{Deserialize, Serialize};

/// Rows of the board.
pub const ROWS: usize = 6;
/// Columns of the board.
pub const COLS: usize = 7;
/// How many in a row win.
pub const CONNECT: usize = 4;

/// A player's color. Red moves first in every game.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    Red,
    Yellow,
}

impl Color {
    /// The other color.
    pub fn other(self) -> Color {
        match self {
            Color::Red => Color::Yellow,
            Color::Yellow => Color::Red,
        }
    }
}

/// A cell position `(row, col)`, row 0 at the top.
pub type Cell = (usize, usize);

/// Why a piece cannot be dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropError {
    /// The column is not 0..=6.
    OutOfRange,
    /// The column has no free cell.
    ColumnFull,
}

/// The grid of cells; serialized as 6 arrays (top row first) of 7 `"red"`, `"yellow"` or
/// `null`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Board {
    cells: [[Option<Color>; COLS]; ROWS],
}

impl Board {
    /// The piece in a cell, if any (`None` outside the board too).
    pub fn get(&self, row: usize, col: usize) -> Option<Color> {
        self.cells
            .get(row)
            .and_then(|r| r.get(col))
            .copied()
            .flatten()
    }

    /// Whether a piece can go into `col`.
    pub fn can_drop(&self, col: usize) -> Result<(), DropError> {
        if col >= COLS {
            Err(DropError::OutOfRange)
        } else if self.cells[0][col].is_some() {
            Err(DropError::ColumnFull)
        } else {
            Ok(())
        }
    }

    /// Drops a piece into `col`; returns the row it landed in.
    pub fn drop_piece(&mut self, col: usize, color: Color) -> Result<usize, DropError> {
        self.can_drop(col)?;
        let row = (0..ROWS)
            .rev()
            .find(|&r| self.cells[r][col].is_none())
            .ok_or(DropError::ColumnFull)?;
        self.cells[row][col] = Some(color);
        Ok(row)
    }

    /// Whether every cell holds a piece.
    pub fn is_full(&self) -> bool {
        self.cells[0].iter().all(Option::is_some)
    }

    /// The pieces on the board.
    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.cells.iter().flatten().filter(|c| c.is_some()).count()
    }

    /// Every cell of every line of at least [`CONNECT`] same-colored pieces that passes
    /// through `(row, col)`, in board order; empty when the piece there did not win.
    pub fn winning_cells(&self, row: usize, col: usize) -> Vec<Cell> {
        let Some(color) = self.get(row, col) else {
            return Vec::new();
        };
        let mut cells: Vec<Cell> = Vec::new();
        for (dr, dc) in [(0isize, 1isize), (1, 0), (1, 1), (1, -1)] {
            let mut line = vec![(row, col)];
            for sign in [-1isize, 1] {
                let (mut r, mut c) = (row as isize, col as isize);
                loop {
                    r += sign * dr;
                    c += sign * dc;
                    if r < 0 || c < 0 || self.get(r as usize, c as usize) != Some(color) {
                        break;
                    }
                    line.push((r as usize, c as usize));
                }
            }
            if line.len() >= CONNECT {
                cells.extend(line);
            }
        }
        cells.sort_unstable();
        cells.dedup();
        cells
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn play(board: &mut Board, moves: &[(usize, Color)]) -> (usize, usize) {
        let mut last = (0, 0);
        for &(col, color) in moves {
            last = (board.drop_piece(col, color).unwrap(), col);
        }
        last
    }

    #[test]
    fn pieces_stack_from_the_bottom() {
        let mut b = Board::default();
        assert_eq!(b.drop_piece(3, Color::Red), Ok(5));
        assert_eq!(b.drop_piece(3, Color::Yellow), Ok(4));
        assert_eq!(b.get(5, 3), Some(Color::Red));
        assert_eq!(b.get(4, 3), Some(Color::Yellow));
        assert_eq!(b.get(3, 3), None);
        assert_eq!(b.count(), 2);
    }

    #[test]
    fn full_column_and_out_of_range_are_refused() {
        let mut b = Board::default();
        for i in 0..ROWS {
            let color = if i % 2 == 0 {
                Color::Red
            } else {
                Color::Yellow
            };
            b.drop_piece(0, color).unwrap();
        }
        assert_eq!(b.drop_piece(0, Color::Red), Err(DropError::ColumnFull));
        assert_eq!(b.drop_piece(7, Color::Red), Err(DropError::OutOfRange));
        assert_eq!(
            b.drop_piece(usize::MAX, Color::Red),
            Err(DropError::OutOfRange)
        );
        assert_eq!(b.count(), ROWS);
    }

    #[test]
    fn horizontal_win() {
        let mut b = Board::default();
        let (r, c) = play(
            &mut b,
            &[
                (0, Color::Red),
                (1, Color::Red),
                (3, Color::Red),
                (2, Color::Red),
            ],
        );
        assert_eq!(b.winning_cells(r, c), vec![(5, 0), (5, 1), (5, 2), (5, 3)]);
    }

    #[test]
    fn vertical_win() {
        let mut b = Board::default();
        let (r, c) = play(&mut b, &[(6, Color::Yellow); 4]);
        assert_eq!(b.winning_cells(r, c), vec![(2, 6), (3, 6), (4, 6), (5, 6)]);
    }

    #[test]
    fn three_is_not_a_win() {
        let mut b = Board::default();
        let (r, c) = play(&mut b, &[(6, Color::Yellow); 3]);
        assert!(b.winning_cells(r, c).is_empty());
        // A different color breaks the line.
        let (r, c) = play(&mut b, &[(6, Color::Red)]);
        assert!(b.winning_cells(r, c).is_empty());
        assert!(b.winning_cells(0, 0).is_empty(), "an empty cell never wins");
    }

    #[test]
    fn diagonal_wins_both_ways() {
        use Color::{Red as R, Yellow as Y};
        // Rising to the right: red at (5,0) (4,1) (3,2) (2,3).
        let mut b = Board::default();
        let (r, c) = play(
            &mut b,
            &[
                (0, R),
                (1, Y),
                (1, R),
                (2, Y),
                (2, Y),
                (2, R),
                (3, Y),
                (3, Y),
                (3, Y),
                (3, R),
            ],
        );
        assert_eq!(b.winning_cells(r, c), vec![(2, 3), (3, 2), (4, 1), (5, 0)]);
        // Falling to the right: the mirror image, completed in the middle of the line.
        let mut b = Board::default();
        let (r, c) = play(
            &mut b,
            &[
                (6, R),
                (5, Y),
                (5, R),
                (4, Y),
                (4, Y),
                (4, R),
                (3, Y),
                (3, Y),
                (3, Y),
                (3, R),
            ],
        );
        assert_eq!((r, c), (2, 3));
        assert_eq!(b.winning_cells(r, c), vec![(2, 3), (3, 4), (4, 5), (5, 6)]);
    }

    #[test]
    fn a_move_joining_two_lines_marks_every_cell() {
        use Color::Red as R;
        let mut b = Board::default();
        // Bottom row 0,1,2 and 4,5,6, then 3 joins them into seven.
        let (r, c) = play(
            &mut b,
            &[(0, R), (1, R), (2, R), (4, R), (5, R), (6, R), (3, R)],
        );
        assert_eq!(b.winning_cells(r, c).len(), 7);
    }

    #[test]
    fn full_board_is_detected() {
        let mut b = Board::default();
        assert!(!b.is_full());
        for col in 0..COLS {
            for row in 0..ROWS {
                let color = if (row / 2 + col) % 2 == 0 {
                    Color::Red
                } else {
                    Color::Yellow
                };
                b.drop_piece(col, color).unwrap();
            }
        }
        assert!(b.is_full());
        assert_eq!(b.count(), ROWS * COLS);
    }

    #[test]
    fn serializes_top_row_first_with_nulls() {
        let mut b = Board::default();
        b.drop_piece(0, Color::Red).unwrap();
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(v[5][0], "red");
        assert_eq!(v[0][0], serde_json::Value::Null);
        assert_eq!(v.as_array().unwrap().len(), ROWS);
        assert_eq!(v[0].as_array().unwrap().len(), COLS);
        let back: Board = serde_json::from_value(v).unwrap();
        assert_eq!(back, b);
    }
}
