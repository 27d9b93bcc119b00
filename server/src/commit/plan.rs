//! What one batch does, decided without I/O: [`plan`] takes the batch's
//! commands, what `commands` says about their keys, and the rooms and
//! standings read in the committing transaction, and answers per command
//! Accepted (with its events), Duplicate or Refused, plus how many seqs each
//! room needs.
//!
//! Every command is authorised by [`policy`] here, inside the transaction,
//! in batch order, over a view that earlier commands of the batch update:
//! a join followed by a post in the same batch is accepted, a post after a
//! leave is refused `not_member`. The hub's cache let the command in; this
//! check is the one that counts (plan v2 §7, risk 4).

use crate::chat::policy::{self, Access, Action, GlobalAction, Standing};
use app::protocol::{ApiError, ErrorCode, Role, RoomKind, UserInfo};
use std::collections::{BTreeMap, HashMap, HashSet};

/// A state-changing command, as the committer receives it (validated by its
/// caller: lengths, white space, name keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Post {
        room_id: i64,
        body: String,
        mentions: Vec<i64>,
        reply_to: Option<i64>,
    },
    CreateRoom {
        name: String,
        name_key: String,
        topic: String,
    },
    Join {
        room_id: i64,
        /// Announce nothing (auto-join at account creation).
        silent: bool,
    },
    Leave {
        room_id: i64,
    },
    Rename {
        room_id: i64,
        name: String,
        name_key: String,
    },
    SetTopic {
        room_id: i64,
        topic: String,
    },
    MarkRead {
        room_id: i64,
        seq: i64,
    },
}

impl Command {
    /// The name stored in `commands.kind`: a `client_id` spent on one kind
    /// of command is refused for another.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Post { .. } => "post",
            Command::CreateRoom { .. } => "create_room",
            Command::Join { .. } => "join",
            Command::Leave { .. } => "leave",
            Command::Rename { .. } => "rename",
            Command::SetTopic { .. } => "set_topic",
            Command::MarkRead { .. } => "mark_read",
        }
    }

    /// The existing room the command acts in (none for a creation).
    pub fn room_id(&self) -> Option<i64> {
        match *self {
            Command::Post { room_id, .. }
            | Command::Join { room_id, .. }
            | Command::Leave { room_id }
            | Command::Rename { room_id, .. }
            | Command::SetTopic { room_id, .. }
            | Command::MarkRead { room_id, .. } => Some(room_id),
            Command::CreateRoom { .. } => None,
        }
    }

    /// The right the command needs in its room.
    fn action(&self) -> Option<Action> {
        match self {
            Command::Post { .. } => Some(Action::Post),
            Command::Join { .. } => Some(Action::Join),
            Command::Leave { .. } => Some(Action::Leave),
            Command::Rename { .. } => Some(Action::Rename),
            Command::SetTopic { .. } => Some(Action::SetTopic),
            Command::MarkRead { .. } => Some(Action::MarkRead),
            Command::CreateRoom { .. } => None,
        }
    }
}

/// What `commands` already holds for a command's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prior<'a> {
    /// Not processed before (or no key: MarkRead).
    Fresh,
    /// Processed before, as a command of this kind.
    Done { kind: &'a str },
}

/// One command of the batch, as [`plan`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    pub actor: &'a UserInfo,
    pub client_id: Option<&'a str>,
    pub command: &'a Command,
    pub prior: Prior<'a>,
}

/// A room as the committing transaction read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomView {
    pub kind: RoomKind,
    pub name: Option<String>,
    pub name_key: Option<String>,
    pub topic: String,
    pub member_count: i64,
}

/// Where an event goes: an existing room, or one created by the command at
/// this place in the batch (its id is known only after the insert).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RoomRef {
    Existing(i64),
    Created(usize),
}

/// An event to append, in its room's order. Payloads per plan v2 §2; a
/// `posted` event references the message posted by its command and never
/// copies the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Posted,
    MemberJoined {
        user_id: i64,
        role: Role,
        silent: bool,
    },
    MemberLeft {
        user_id: i64,
    },
    Renamed {
        name: String,
        old_name: Option<String>,
    },
    TopicChanged {
        topic: String,
    },
}

/// One event of an accepted command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEvent {
    pub room: RoomRef,
    pub kind: EventKind,
}

/// What the batch does with one command.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Applied now, with these events (none for a repeated join or a mark).
    Accepted(Vec<PlannedEvent>),
    /// Repeats the command at this place earlier in the batch: answered as
    /// that one is.
    Repeat(usize),
    /// Processed in an earlier batch: answered from the stored result.
    Duplicate,
    /// Not applied; the other commands are unaffected.
    Refused(ApiError),
}

/// The plan of one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// One outcome per command, in batch order.
    pub outcomes: Vec<Outcome>,
    /// Events per existing room, in room id order: what `reserve_seqs` asks.
    pub counts: BTreeMap<i64, i64>,
    /// Per command, the room as the batch left it right after an accepted
    /// command (a creation's new room included); `None` otherwise. What
    /// publishing tells a joining member about the room.
    pub views: Vec<Option<RoomView>>,
}

/// Decides the batch. `rooms` holds every existing room the commands name
/// that exists; `standings` the actors' rows in them (absent: outsider);
/// `names_taken` the public name keys the store already holds among those
/// the batch's creations and renames ask for.
pub fn plan(
    items: &[Item<'_>],
    rooms: &HashMap<i64, RoomView>,
    standings: &HashMap<(i64, i64), Standing>,
    names_taken: &HashSet<String>,
) -> Plan {
    let mut view = rooms.clone();
    let mut standings = standings.clone();
    let mut names: HashSet<String> = names_taken.clone();
    // The first place of each (user, client_id), and its kind.
    let mut first: HashMap<(i64, &str), usize> = HashMap::new();
    let mut outcomes = Vec::with_capacity(items.len());
    let mut counts: BTreeMap<i64, i64> = BTreeMap::new();
    let mut views = Vec::with_capacity(items.len());

    for (at, item) in items.iter().enumerate() {
        // Every `continue` below is a command that is not accepted now.
        views.push(None);
        let command = item.command;
        // A stored key: every occurrence is compared against the stored
        // kind. Repeats are folded only among fresh keys.
        if let Prior::Done { kind } = item.prior {
            outcomes.push(if kind == command.kind() {
                Outcome::Duplicate
            } else {
                Outcome::Refused(reused_key())
            });
            continue;
        }
        if let Some(key) = item.client_id {
            if let Some(&earlier) = first.get(&(item.actor.id, key)) {
                outcomes.push(if items[earlier].command.kind() == command.kind() {
                    Outcome::Repeat(earlier)
                } else {
                    Outcome::Refused(reused_key())
                });
                continue;
            }
            first.insert((item.actor.id, key), at);
        }
        let outcome = match decide(at, item, &mut view, &mut standings, &mut names) {
            Ok(events) => {
                for e in &events {
                    if let RoomRef::Existing(id) = e.room {
                        *counts.entry(id).or_default() += 1;
                    }
                }
                views[at] = match (command.room_id(), command) {
                    (Some(id), _) => view.get(&id).cloned(),
                    (
                        None,
                        Command::CreateRoom {
                            name,
                            name_key,
                            topic,
                        },
                    ) => Some(RoomView {
                        kind: RoomKind::Public,
                        name: Some(name.clone()),
                        name_key: Some(name_key.clone()),
                        topic: topic.clone(),
                        member_count: 1,
                    }),
                    (None, _) => None,
                };
                Outcome::Accepted(events)
            }
            Err(error) => Outcome::Refused(error),
        };
        outcomes.push(outcome);
    }
    Plan {
        outcomes,
        counts,
        views,
    }
}

fn reused_key() -> ApiError {
    ApiError::new(
        ErrorCode::BadClientId,
        "This client_id was already used for another command.",
    )
}

fn room_exists() -> ApiError {
    ApiError::new(ErrorCode::RoomExists, "A room with that name exists.")
}

/// Authorises one command against the view and, when allowed, applies it to
/// the view and returns its events.
fn decide(
    at: usize,
    item: &Item<'_>,
    view: &mut HashMap<i64, RoomView>,
    standings: &mut HashMap<(i64, i64), Standing>,
    names: &mut HashSet<String>,
) -> Result<Vec<PlannedEvent>, ApiError> {
    let user = item.actor.id;
    let (Some(room_id), Some(action)) = (item.command.room_id(), item.command.action()) else {
        // A creation: the only command without a room.
        let Command::CreateRoom { name_key, .. } = item.command else {
            unreachable!("every other command names a room");
        };
        policy::authorize_global(Some(item.actor), GlobalAction::CreateRoom)
            .map_err(ApiError::from)?;
        if !names.insert(name_key.clone()) {
            return Err(room_exists());
        }
        return Ok(vec![PlannedEvent {
            room: RoomRef::Created(at),
            kind: EventKind::MemberJoined {
                user_id: user,
                role: Role::Owner,
                silent: false,
            },
        }]);
    };
    let access = view.get(&room_id).map(|r| Access {
        kind: r.kind,
        standing: standings
            .get(&(room_id, user))
            .copied()
            .unwrap_or(Standing::Outsider),
    });
    policy::authorize(access.as_ref(), action).map_err(ApiError::from)?;
    let room = view.get_mut(&room_id).expect("authorised rooms exist");
    let standing = access.map(|a| a.standing).unwrap_or(Standing::Outsider);
    let event = |kind| {
        vec![PlannedEvent {
            room: RoomRef::Existing(room_id),
            kind,
        }]
    };
    Ok(match item.command {
        Command::Post { .. } => event(EventKind::Posted),
        Command::Join { silent, .. } => {
            if matches!(standing, Standing::Member(_)) {
                // Joining again changes nothing and says nothing.
                Vec::new()
            } else {
                standings.insert((room_id, user), Standing::Member(Role::Member));
                room.member_count += 1;
                event(EventKind::MemberJoined {
                    user_id: user,
                    role: Role::Member,
                    silent: *silent,
                })
            }
        }
        Command::Leave { .. } => {
            standings.insert((room_id, user), Standing::Outsider);
            room.member_count -= 1;
            event(EventKind::MemberLeft { user_id: user })
        }
        Command::Rename { name, name_key, .. } => {
            if room.name_key.as_deref() != Some(name_key.as_str()) {
                if !names.insert(name_key.clone()) {
                    return Err(room_exists());
                }
                if let Some(old) = room.name_key.take() {
                    names.remove(&old);
                }
            }
            let old_name = room.name.replace(name.clone());
            room.name_key = Some(name_key.clone());
            event(EventKind::Renamed {
                name: name.clone(),
                old_name,
            })
        }
        Command::SetTopic { topic, .. } => {
            room.topic = topic.clone();
            event(EventKind::TopicChanged {
                topic: topic.clone(),
            })
        }
        Command::MarkRead { .. } => Vec::new(),
        Command::CreateRoom { .. } => unreachable!("handled above"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64) -> UserInfo {
        UserInfo {
            id,
            name: format!("u{id}"),
            picture: None,
        }
    }

    fn public(name: &str, members: i64) -> RoomView {
        RoomView {
            kind: RoomKind::Public,
            name: Some(name.into()),
            name_key: Some(name.to_lowercase()),
            topic: String::new(),
            member_count: members,
        }
    }

    fn post(room_id: i64) -> Command {
        Command::Post {
            room_id,
            body: "hi".into(),
            mentions: Vec::new(),
            reply_to: None,
        }
    }

    struct Batch {
        users: Vec<UserInfo>,
        commands: Vec<(usize, Option<&'static str>, Command, Option<&'static str>)>,
        rooms: HashMap<i64, RoomView>,
        standings: HashMap<(i64, i64), Standing>,
        names: HashSet<String>,
    }

    impl Batch {
        fn new() -> Self {
            let mut rooms = HashMap::new();
            rooms.insert(1, public("general", 1));
            rooms.insert(2, public("design", 1));
            let mut standings = HashMap::new();
            // User 1 is a member of general and owns design.
            standings.insert((1, 1), Standing::Member(Role::Member));
            standings.insert((2, 1), Standing::Member(Role::Owner));
            Self {
                users: (0..4).map(user).collect(),
                commands: Vec::new(),
                rooms,
                standings,
                names: ["general", "design"].map(String::from).into(),
            }
        }

        fn with(mut self, user: usize, key: Option<&'static str>, command: Command) -> Self {
            self.commands.push((user, key, command, None));
            self
        }

        fn done(
            mut self,
            user: usize,
            key: &'static str,
            command: Command,
            kind: &'static str,
        ) -> Self {
            self.commands.push((user, Some(key), command, Some(kind)));
            self
        }

        fn plan(&self) -> Plan {
            let items: Vec<Item> = self
                .commands
                .iter()
                .map(|(u, key, command, done)| Item {
                    actor: &self.users[*u],
                    client_id: *key,
                    command,
                    prior: match done {
                        Some(kind) => Prior::Done { kind },
                        None => Prior::Fresh,
                    },
                })
                .collect();
            plan(&items, &self.rooms, &self.standings, &self.names)
        }
    }

    fn refused(outcome: &Outcome) -> ErrorCode {
        match outcome {
            Outcome::Refused(e) => e.code,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn events(outcome: &Outcome) -> &[PlannedEvent] {
        match outcome {
            Outcome::Accepted(events) => events,
            other => panic!("expected an acceptance, got {other:?}"),
        }
    }

    #[test]
    fn join_then_post_in_one_batch() {
        let p = Batch::new()
            .with(
                2,
                Some("a"),
                Command::Join {
                    room_id: 1,
                    silent: false,
                },
            )
            .with(2, Some("b"), post(1))
            .plan();
        assert_eq!(
            events(&p.outcomes[0]),
            [PlannedEvent {
                room: RoomRef::Existing(1),
                kind: EventKind::MemberJoined {
                    user_id: 2,
                    role: Role::Member,
                    silent: false
                },
            }]
        );
        assert_eq!(events(&p.outcomes[1])[0].kind, EventKind::Posted);
        assert_eq!(p.counts, BTreeMap::from([(1, 2)]));
    }

    #[test]
    fn post_without_join_is_refused_not_member() {
        let p = Batch::new().with(2, Some("a"), post(1)).plan();
        assert_eq!(refused(&p.outcomes[0]), ErrorCode::NotMember);
        assert!(p.counts.is_empty());
    }

    #[test]
    fn in_batch_duplicates_fold_onto_the_first() {
        let p = Batch::new()
            .with(1, Some("k"), post(1))
            .with(1, Some("k"), post(1))
            // Another user's identical key is their own command.
            .with(
                2,
                Some("k"),
                Command::Join {
                    room_id: 1,
                    silent: false,
                },
            )
            // The same key for another kind of command.
            .with(1, Some("k"), Command::Leave { room_id: 1 })
            .plan();
        assert_eq!(events(&p.outcomes[0]).len(), 1);
        assert_eq!(p.outcomes[1], Outcome::Repeat(0));
        assert_eq!(events(&p.outcomes[2]).len(), 1);
        assert_eq!(refused(&p.outcomes[3]), ErrorCode::BadClientId);
        assert_eq!(p.counts, BTreeMap::from([(1, 2)]));
    }

    #[test]
    fn stored_keys_are_duplicates_or_refused_for_another_kind() {
        let p = Batch::new()
            .done(1, "old", post(1), "post")
            .done(1, "other", post(1), "create_room")
            .plan();
        assert_eq!(p.outcomes[0], Outcome::Duplicate);
        assert_eq!(refused(&p.outcomes[1]), ErrorCode::BadClientId);
        assert!(p.counts.is_empty());
    }

    #[test]
    fn refusals_keep_the_other_commands() {
        let p = Batch::new()
            .with(1, Some("a"), post(1))
            .with(3, Some("b"), post(2))
            .with(1, Some("c"), post(99))
            .with(1, Some("d"), post(2))
            .plan();
        assert_eq!(events(&p.outcomes[0]).len(), 1);
        assert_eq!(refused(&p.outcomes[1]), ErrorCode::NotMember);
        assert_eq!(refused(&p.outcomes[2]), ErrorCode::NotFound);
        assert_eq!(events(&p.outcomes[3]).len(), 1);
        assert_eq!(p.counts, BTreeMap::from([(1, 1), (2, 1)]));
    }

    #[test]
    fn seq_counts_per_room_cover_every_event_kind() {
        let p = Batch::new()
            .with(1, Some("a"), post(2))
            .with(
                1,
                Some("b"),
                Command::SetTopic {
                    room_id: 2,
                    topic: "t".into(),
                },
            )
            .with(
                1,
                Some("c"),
                Command::Rename {
                    room_id: 2,
                    name: "Draw".into(),
                    name_key: "draw".into(),
                },
            )
            .with(
                2,
                Some("d"),
                Command::Join {
                    room_id: 2,
                    silent: true,
                },
            )
            .with(2, Some("e"), Command::Leave { room_id: 2 })
            .with(1, Some("f"), post(1))
            // A repeated join and a mark take no seq.
            .with(
                1,
                Some("g"),
                Command::Join {
                    room_id: 1,
                    silent: false,
                },
            )
            .with(1, None, Command::MarkRead { room_id: 1, seq: 1 })
            .with(
                3,
                Some("h"),
                Command::CreateRoom {
                    name: "New".into(),
                    name_key: "new".into(),
                    topic: String::new(),
                },
            )
            .plan();
        assert_eq!(p.counts, BTreeMap::from([(1, 1), (2, 5)]));
        assert!(events(&p.outcomes[6]).is_empty());
        assert!(events(&p.outcomes[7]).is_empty());
        assert_eq!(events(&p.outcomes[8])[0].room, RoomRef::Created(8));
        assert_eq!(
            events(&p.outcomes[2])[0].kind,
            EventKind::Renamed {
                name: "Draw".into(),
                old_name: Some("design".into())
            }
        );
    }

    #[test]
    fn post_after_leave_in_the_same_batch_is_refused_not_member() {
        let p = Batch::new()
            .with(1, Some("a"), Command::Leave { room_id: 1 })
            .with(1, Some("b"), post(1))
            .plan();
        assert_eq!(events(&p.outcomes[0]).len(), 1);
        assert_eq!(refused(&p.outcomes[1]), ErrorCode::NotMember);
        assert_eq!(p.counts, BTreeMap::from([(1, 1)]));
    }

    #[test]
    fn rename_by_a_non_owner_is_refused_forbidden() {
        let p = Batch::new()
            .with(
                1,
                Some("a"),
                Command::Rename {
                    room_id: 1,
                    name: "x".into(),
                    name_key: "x".into(),
                },
            )
            .with(
                1,
                Some("b"),
                Command::SetTopic {
                    room_id: 1,
                    topic: "x".into(),
                },
            )
            .with(
                2,
                Some("c"),
                Command::Rename {
                    room_id: 2,
                    name: "x".into(),
                    name_key: "x".into(),
                },
            )
            .plan();
        assert_eq!(refused(&p.outcomes[0]), ErrorCode::Forbidden);
        assert_eq!(refused(&p.outcomes[1]), ErrorCode::Forbidden);
        assert_eq!(refused(&p.outcomes[2]), ErrorCode::NotMember);
        assert!(p.counts.is_empty());
    }

    #[test]
    fn names_are_unique_across_the_batch_and_the_store() {
        let create = |name: &str| Command::CreateRoom {
            name: name.into(),
            name_key: name.to_lowercase(),
            topic: String::new(),
        };
        let p = Batch::new()
            .with(1, Some("a"), create("General"))
            .with(1, Some("b"), create("Fresh"))
            .with(2, Some("c"), create("fresh"))
            // Renaming design frees its old name for a later creation.
            .with(
                1,
                Some("d"),
                Command::Rename {
                    room_id: 2,
                    name: "Draw".into(),
                    name_key: "draw".into(),
                },
            )
            .with(3, Some("e"), create("Design"))
            .with(3, Some("f"), create("Draw"))
            .plan();
        assert_eq!(refused(&p.outcomes[0]), ErrorCode::RoomExists);
        assert_eq!(events(&p.outcomes[1]).len(), 1);
        assert_eq!(refused(&p.outcomes[2]), ErrorCode::RoomExists);
        assert_eq!(events(&p.outcomes[3]).len(), 1);
        assert_eq!(events(&p.outcomes[4]).len(), 1);
        assert_eq!(refused(&p.outcomes[5]), ErrorCode::RoomExists);
    }
    #[test]
    fn each_repeat_of_a_stored_key_is_checked_against_the_stored_kind() {
        let join = Command::Join {
            room_id: 1,
            silent: false,
        };
        let p = Batch::new()
            .done(2, "k", post(1), "join")
            .done(2, "k", join.clone(), "join")
            .done(2, "k", join, "join")
            .plan();
        assert_eq!(refused(&p.outcomes[0]), ErrorCode::BadClientId);
        assert!(
            matches!(p.outcomes[1], Outcome::Duplicate),
            "{:?}",
            p.outcomes[1]
        );
        assert!(
            matches!(p.outcomes[2], Outcome::Duplicate),
            "{:?}",
            p.outcomes[2]
        );
        assert!(p.counts.is_empty());
    }
}
