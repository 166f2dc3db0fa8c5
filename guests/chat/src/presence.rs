//! Who is in the room, kept in the instance: a join or a leave costs O(log n), not a read
//! of every socket's attachment, and what the others are told is bounded. In a small room
//! (at most `presence_list_max` people) everyone gets a notice and the whole list on every
//! change, as before; in a large one the others only get a count, and only when it moved
//! by 5 % since they last heard it, so a room of thousands does not send thousands of
//! frames per join. The joiner always gets the first `presence_list_max` names and the count.
//!
//! After an activation it is rebuilt once from the sockets' attachments (which survive
//! hibernation); nothing of it is stored.

use std::collections::BTreeMap;

/// People here, by name (two tabs of one name count once).
#[derive(Debug, Default)]
pub struct Presence {
    /// Name -> open sockets with it.
    names: BTreeMap<String, usize>,
    /// The count the others were last told.
    announced: usize,
}

/// What the others should be told about a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    /// A small room: a join/leave notice and the whole list.
    Everyone,
    /// A large room whose count moved enough: the count (and the first names).
    Count,
    /// A large room whose count barely moved: nothing.
    Nothing,
}

impl Presence {
    /// The people behind these sockets' names.
    pub fn from_names(names: impl IntoIterator<Item = String>) -> Presence {
        let mut presence = Presence::default();
        for name in names {
            presence.join(&name);
        }
        presence.announced = presence.count();
        presence
    }

    pub fn join(&mut self, name: &str) {
        *self.names.entry(name.to_owned()).or_insert(0) += 1;
    }

    pub fn leave(&mut self, name: &str) {
        if let Some(n) = self.names.get_mut(name) {
            *n -= 1;
            if *n == 0 {
                self.names.remove(name);
            }
        }
    }

    /// How many people (distinct names) are here.
    pub fn count(&self) -> usize {
        self.names.len()
    }

    /// The first `max` names, sorted.
    pub fn users(&self, max: usize) -> Vec<String> {
        self.names.keys().take(max).cloned().collect()
    }

    /// What to tell the others after a change, in a room that lists at most `max` names.
    pub fn announce(&mut self, max: usize) -> Announce {
        let count = self.count();
        if count <= max {
            self.announced = count;
            return Announce::Everyone;
        }
        let step = (self.announced / 20).max(1);
        if count.abs_diff(self.announced) >= step {
            self.announced = count;
            Announce::Count
        } else {
            Announce::Nothing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sorted_and_counted_once() {
        let mut p = Presence::from_names(["bob".into(), "alice".into(), "bob".into()]);
        assert_eq!(p.users(10), vec!["alice", "bob"]);
        assert_eq!(p.count(), 2);
        p.leave("bob");
        assert_eq!(p.count(), 2, "bob still has a tab open");
        p.leave("bob");
        assert_eq!(p.users(10), vec!["alice"]);
        assert_eq!(p.users(0), Vec::<String>::new());
    }

    #[test]
    fn a_large_room_announces_a_count_only_when_it_moved_by_five_percent() {
        let mut p = Presence::default();
        let mut told = 0;
        for i in 0..3_700 {
            p.join(&format!("user{i:05}"));
            match p.announce(100) {
                Announce::Everyone => assert!(p.count() <= 100),
                Announce::Count => told += 1,
                Announce::Nothing => {}
            }
        }
        // About ln(37) / ln(1.05) ≈ 74 announcements for 3,600 joins past the threshold.
        assert!((50..120).contains(&told), "{told} count announcements");
        for i in 0..3_700 {
            p.leave(&format!("user{i:05}"));
            p.announce(100);
        }
        assert_eq!(p.count(), 0);
        assert_eq!(p.announce(100), Announce::Everyone);
    }
}
