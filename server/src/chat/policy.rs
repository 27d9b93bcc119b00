//! Rights: who may do what, in which room. **The only place that decides.**
//!
//! Every room operation, over every transport (WebSocket frames, server
//! functions, no-JS forms, server-rendered pages) and again inside the
//! committing transaction, asks [`authorize`]; operations without a room ask
//! [`authorize_global`]. No transport and no store query decides a right on
//! its own: they look up facts ([`Access`]) and obey the answer.
//!
//! Everything here is pure: no I/O, no clock, no configuration. The facts come
//! from the store for HTTP (one lookup per request), from the hub's membership
//! cache for sockets, and from the committing transaction for the committer;
//! all three go through the same functions, so a command racing a leave is
//! refused by the committer even if the socket's cache let it through.
//!
//! The rules are stated once more, independently and cell by cell, in the
//! committed table `server/tests/fixtures/authz.csv`, written by hand from
//! `DESIGN.md`. The tests at the bottom of this file check every
//! transport-independent cell of that table against these functions; the
//! socket harness checks every cell against the running server.
//!
//! # The rules, in the order they are applied
//! 1. A caller without a session is refused ([`Denied::SignIn`]) before the
//!    room is considered, so a signed-out caller learns nothing about which
//!    ids exist. Operations whose caller may be signed out pass through
//!    [`signed_in`] before any lookup.
//! 2. A room is *visible* to a caller when it is public, when the caller is a
//!    member, or when the caller is invited to it and it is private. A room
//!    that is not visible answers exactly like a room that does not exist
//!    ([`Denied::NotFound`]) for every action (DESIGN: private rooms and DMs
//!    "are members-only, and to anyone else they are indistinguishable from
//!    rooms that do not exist").
//! 3. Outsiders of a public room may preview it (read its history, see its
//!    members, open it live) and join it; anything else needs membership
//!    ([`Denied::NotMember`]).
//! 4. Banned users of a public room may still preview it (DESIGN: "any
//!    signed-in user may preview a public room"), but not join (DESIGN:
//!    "Banned users cannot rejoin") nor do anything else ([`Denied::Banned`]).
//! 5. Members read, post, open, mark read, type, receive the room's events,
//!    and leave; joining again is allowed and changes nothing. Renaming and
//!    setting the topic need the owner role. A DM is "a fixed set of 2+
//!    people, no name": nobody renames it, sets its topic or leaves it.
//! 6. Invited users of a private room (issue 12) may accept by joining;
//!    anything else needs membership.
//! 7. Actions whose feature has not landed yet are refused with
//!    [`Denied::Forbidden`] for members (outsiders, banned and hidden callers
//!    get the answers of rules 1–4, as they will once the feature exists); the
//!    comment on each names the issue that enables it and the rule it will get.

use app::protocol::{ApiError, ErrorCode, Role, RoomKind, UserInfo};

/// Where a caller stands in one room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Standing {
    /// No session. Refused everything, whatever the room.
    SignedOut,
    /// Signed in, with no membership, invitation or ban in this room (never
    /// joined, or left).
    Outsider,
    /// Invited and not yet answered (issue 12).
    Invited,
    /// Banned from this room: may not rejoin (bans are issued from issue 17
    /// on; the standing exists already so that no later change widens rights).
    Banned,
    /// A member, with a role.
    Member(Role),
}

/// The facts about one room and one caller that rights depend on.
///
/// `Option<&Access>` is what a lookup returns: `None` when the room does not
/// exist. A lookup is never made for a signed-out caller (see [`signed_in`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Access {
    pub kind: RoomKind,
    pub standing: Standing,
}

/// Something a caller wants to do in one room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read messages: a history page (latest, before or around a message).
    ReadHistory,
    /// See the room as someone deciding whether to join: its summary, latest
    /// page and members (the room page, or its server function).
    Preview,
    /// Receive the room's events on every connection of the user, and resume
    /// them after a reconnect: the per-user fan-out of members.
    ReceiveEvents,
    /// Open the room on one connection: presence, typing, and for a
    /// previewer the room's live events while it stays open.
    Open,
    /// Post a message.
    Post,
    /// Become a member (idempotent for members).
    Join,
    /// Stop being a member.
    Leave,
    /// Rename the room.
    Rename,
    /// Set the room's topic.
    SetTopic,
    /// Move one's read marker.
    MarkRead,
    /// Say one is typing (ephemeral, never stored).
    Typing,
    /// See the room's member list.
    SeeMembers,
    /// Edit one's own message (issue 15).
    EditOwn,
    /// Edit someone else's message (never: issue 15 lets authors alone edit).
    EditAny,
    /// Delete one's own message (issue 15).
    DeleteOwn,
    /// Delete anyone's message (issue 15: moderators).
    DeleteAny,
    /// Add or remove a reaction (issue 15).
    React,
    /// Invite someone (issue 12).
    Invite,
    /// Remove a member (issue 12 for private rooms, issue 17 for moderation).
    Kick,
    /// Ban someone (issue 17).
    Ban,
    /// Lift a ban (issue 17).
    Unban,
    /// Change a member's role (issue 17).
    SetRole,
    /// Stop someone posting for a while (issue 17).
    Mute,
    /// Change the room's kind (issue 12: public to private).
    ChangeKind,
}

/// Something a caller wants to do that concerns no single existing room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GlobalAction {
    /// Browse the directory of public rooms (which rooms it lists: [`listed`]).
    ListDirectory,
    /// Create a public room (and become its owner).
    CreateRoom,
    /// Open (find or create) a DM with a set of people (issue 12).
    OpenDm,
}

/// Why an action is refused. Each maps to one [`ErrorCode`] (see the `From`
/// impls), identical over every transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Denied {
    /// No session: sign in first (`unauthorized`, 401).
    SignIn,
    /// No such room, or one the caller may not see (`not_found`, 404).
    NotFound,
    /// The room is visible but the action needs membership (`not_member`).
    NotMember,
    /// A member, but without the right (role, room kind, or a feature not
    /// enabled yet) (`forbidden`).
    Forbidden,
    /// Banned from the room (`banned`).
    Banned,
}

impl From<Denied> for ApiError {
    /// The one mapping from refusals to what clients see. The `not_found`
    /// message names no id, so a hidden room and a missing one answer alike,
    /// byte for byte.
    fn from(denied: Denied) -> Self {
        let (code, message) = match denied {
            Denied::SignIn => (ErrorCode::Unauthorized, "Sign in first."),
            Denied::NotFound => (ErrorCode::NotFound, "There is no such room."),
            Denied::NotMember => (ErrorCode::NotMember, "Join the room first."),
            Denied::Forbidden => (ErrorCode::Forbidden, "You may not do that here."),
            Denied::Banned => (ErrorCode::Banned, "You are banned from this room."),
        };
        ApiError::new(code, message)
    }
}

impl From<Denied> for ErrorCode {
    fn from(denied: Denied) -> Self {
        ApiError::from(denied).code
    }
}

/// Passes a caller that has a session; refuses one that has none with
/// [`Denied::SignIn`].
///
/// Operations whose caller may be signed out (room pages, the directory, the
/// legacy `/rooms/<name>` redirect) call this *before* looking the room up,
/// so that a signed-out caller gets the same answer for every id: existing,
/// hidden or missing.
pub fn signed_in<T>(caller: Option<T>) -> Result<T, Denied> {
    caller.ok_or(Denied::SignIn)
}

/// Decides whether the caller described by `access` may do `action` in its
/// room; `access` is `None` when the room does not exist.
pub fn authorize(access: Option<&Access>, action: Action) -> Result<(), Denied> {
    let Some(&Access { kind, standing }) = access else {
        return Err(Denied::NotFound);
    };
    match (standing, kind) {
        (Standing::SignedOut, _) => Err(Denied::SignIn),
        (Standing::Member(role), kind) => member(kind, role, action),
        // An invitation to a public room adds nothing to what anyone may do.
        (Standing::Outsider | Standing::Invited, RoomKind::Public) => {
            if previews(action) || action == Action::Join {
                Ok(())
            } else {
                Err(Denied::NotMember)
            }
        }
        (Standing::Banned, RoomKind::Public) => {
            if previews(action) {
                Ok(())
            } else {
                Err(Denied::Banned)
            }
        }
        // Issue 12: the invited person sees the room (who invited them) and
        // may accept by joining; reading stays members-only (DESIGN).
        // Declining and withdrawing are issue 12's own actions.
        (Standing::Invited, RoomKind::Private) => match action {
            Action::Join => Ok(()),
            _ => Err(Denied::NotMember),
        },
        // Not visible: indistinguishable from a room that does not exist. A
        // DM is a fixed set of people, so nobody is ever invited to one; a
        // ban without membership leaves a private room or DM invisible.
        (Standing::Outsider | Standing::Banned, RoomKind::Private | RoomKind::Dm)
        | (Standing::Invited, RoomKind::Dm) => Err(Denied::NotFound),
    }
}

/// What anyone signed in may do in a public room without being a member:
/// DESIGN's preview ("read its history, not post"), with the member list the
/// room page shows, and live updates while it is open.
fn previews(action: Action) -> bool {
    match action {
        Action::ReadHistory | Action::Preview | Action::Open | Action::SeeMembers => true,
        Action::ReceiveEvents
        | Action::Post
        | Action::Join
        | Action::Leave
        | Action::Rename
        | Action::SetTopic
        | Action::MarkRead
        | Action::Typing
        | Action::EditOwn
        | Action::EditAny
        | Action::DeleteOwn
        | Action::DeleteAny
        | Action::React
        | Action::Invite
        | Action::Kick
        | Action::Ban
        | Action::Unban
        | Action::SetRole
        | Action::Mute
        | Action::ChangeKind => false,
    }
}

/// A member's rights, by room kind and role. Every action is named: a new
/// action does not compile until it has a rule here.
fn member(kind: RoomKind, role: Role, action: Action) -> Result<(), Denied> {
    let dm = kind == RoomKind::Dm;
    let allowed = match action {
        Action::ReadHistory
        | Action::Preview
        | Action::ReceiveEvents
        | Action::Open
        | Action::Post
        | Action::MarkRead
        | Action::Typing
        | Action::SeeMembers => true,
        // Already a member: accepted, and changes nothing (no event).
        Action::Join => true,
        // The owner may leave too; the room is then ownerless, like general
        // (plan, open decision 5). A DM is a fixed set of people (DESIGN): its
        // members cannot leave it (issue 12 may add hiding it instead).
        Action::Leave => !dm,
        // A DM has no name and no owner (DESIGN, issue 12).
        Action::Rename | Action::SetTopic => !dm && role == Role::Owner,
        // Issue 15 enables these for members on their own messages, and
        // DeleteAny for moderators and owners.
        Action::EditOwn | Action::DeleteOwn | Action::React | Action::DeleteAny => false,
        // Never: issue 15 lets authors alone edit (and keeps no edit history).
        Action::EditAny => false,
        // Issue 12 enables Invite (owner or moderator, private rooms), Kick
        // (the same, a member out of a private room) and ChangeKind (owner,
        // public to private).
        Action::Invite | Action::Kick | Action::ChangeKind => false,
        // Issue 17 (moderation) enables these for moderators and owners, and
        // Kick in public rooms.
        Action::Ban | Action::Unban | Action::SetRole | Action::Mute => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(Denied::Forbidden)
    }
}

/// Decides whether a caller (`None`: signed out) may do something that
/// concerns no single existing room.
pub fn authorize_global(user: Option<&UserInfo>, action: GlobalAction) -> Result<(), Denied> {
    signed_in(user)?;
    match action {
        // Per-user rate limits and MAX_MEMBERSHIPS are limits, not rights:
        // they are enforced where they are counted.
        GlobalAction::ListDirectory | GlobalAction::CreateRoom => Ok(()),
        // Issue 12 enables DMs for every signed-in user.
        GlobalAction::OpenDm => Err(Denied::Forbidden),
    }
}

/// Whether a room of this kind appears in the directory (to a caller that
/// [`authorize_global`] let list it), whatever the caller's standing in it:
/// public rooms do; private rooms and DMs never do, not even to their members,
/// who find them in their own room list (DESIGN: "a search never returns,
/// counts or hints at a room the user cannot read").
pub fn listed(kind: RoomKind) -> bool {
    match kind {
        RoomKind::Public => true,
        RoomKind::Private | RoomKind::Dm => false,
    }
}

/// The table's loader, shared with the socket harness without a copy.
#[cfg(test)]
#[path = "../../tests/common/authz.rs"]
mod table;

#[cfg(test)]
mod tests {
    use super::table::{Expected, Table};
    use super::*;
    use std::collections::BTreeMap;

    const ACTIONS: [Action; 24] = [
        Action::ReadHistory,
        Action::Preview,
        Action::ReceiveEvents,
        Action::Open,
        Action::Post,
        Action::Join,
        Action::Leave,
        Action::Rename,
        Action::SetTopic,
        Action::MarkRead,
        Action::Typing,
        Action::SeeMembers,
        Action::EditOwn,
        Action::EditAny,
        Action::DeleteOwn,
        Action::DeleteAny,
        Action::React,
        Action::Invite,
        Action::Kick,
        Action::Ban,
        Action::Unban,
        Action::SetRole,
        Action::Mute,
        Action::ChangeKind,
    ];
    const KINDS: [RoomKind; 3] = [RoomKind::Public, RoomKind::Private, RoomKind::Dm];
    const STANDINGS: [Standing; 7] = [
        Standing::SignedOut,
        Standing::Outsider,
        Standing::Invited,
        Standing::Banned,
        Standing::Member(Role::Member),
        Standing::Member(Role::Moderator),
        Standing::Member(Role::Owner),
    ];
    const DENIALS: [Denied; 5] = [
        Denied::SignIn,
        Denied::NotFound,
        Denied::NotMember,
        Denied::Forbidden,
        Denied::Banned,
    ];

    fn user() -> UserInfo {
        UserInfo {
            id: 1,
            name: "Ann".into(),
            picture: None,
        }
    }

    /// What the policy says, or what the table expects, for one cell.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Verdict {
        /// Allowed, in full.
        Allowed,
        /// Allowed to look, not to post: the room page without a composer.
        Preview,
        /// Listed in the directory.
        Listed,
        /// Left out of the directory.
        Hidden,
        Refused(Denied),
    }

    impl Verdict {
        /// Whether `self` (what the policy says) grants more than `expected`.
        fn allows_more_than(self, expected: Verdict) -> bool {
            use Verdict::*;
            matches!(
                (expected, self),
                (Refused(_), Allowed | Preview | Listed | Hidden)
                    | (Preview, Allowed)
                    | (Hidden, Listed)
            )
        }
    }

    /// What a table action asks of the policy.
    enum Check {
        Room(Action),
        /// The room page (HTML) or its server function: `preview` when the
        /// caller may preview but not post, `ok` when they may post too.
        Page,
        Directory,
        Global(GlobalAction),
    }

    fn check(action: &str) -> Check {
        match action {
            "history" | "around" => Check::Room(Action::ReadHistory),
            "preview_page" | "room_page" => Check::Page,
            "open" => Check::Room(Action::Open),
            "resume" => Check::Room(Action::ReceiveEvents),
            "post" => Check::Room(Action::Post),
            "join" => Check::Room(Action::Join),
            "leave" => Check::Room(Action::Leave),
            "rename" => Check::Room(Action::Rename),
            "set_topic" => Check::Room(Action::SetTopic),
            "mark_read" => Check::Room(Action::MarkRead),
            "typing" => Check::Room(Action::Typing),
            "members" => Check::Room(Action::SeeMembers),
            "directory" => Check::Directory,
            "create_room" => Check::Global(GlobalAction::CreateRoom),
            other => panic!("the table has action `{other}` that this check cannot map"),
        }
    }

    fn kind(name: &str) -> Option<RoomKind> {
        match name {
            "public" => Some(RoomKind::Public),
            "private" => Some(RoomKind::Private),
            "dm" => Some(RoomKind::Dm),
            "missing" => None,
            other => panic!("unknown kind `{other}`"),
        }
    }

    fn standing(name: &str) -> Standing {
        match name {
            "signed_out" => Standing::SignedOut,
            "outsider" => Standing::Outsider,
            "member" => Standing::Member(Role::Member),
            "owner" => Standing::Member(Role::Owner),
            "banned" => Standing::Banned,
            other => panic!("unknown standing `{other}`"),
        }
    }

    /// The table's expectation as a verdict; `None` for a cell the policy
    /// does not decide (not offered by the transport, or a code only a
    /// transport or a limit can give).
    fn expected(e: Expected) -> Option<Verdict> {
        match e {
            Expected::Ok => Some(Verdict::Allowed),
            Expected::Preview => Some(Verdict::Preview),
            Expected::Listed => Some(Verdict::Listed),
            Expected::Hidden => Some(Verdict::Hidden),
            Expected::SignIn => Some(Verdict::Refused(Denied::SignIn)),
            Expected::NotOffered => None,
            // Inverts the production mapping rather than restating it.
            Expected::Error(code) => DENIALS
                .into_iter()
                .find(|d| ErrorCode::from(*d) == code)
                .map(Verdict::Refused),
        }
    }

    /// What the policy answers for one cell, as an operation would ask it.
    fn actual(check: &Check, kind: Option<RoomKind>, standing: Standing) -> Verdict {
        let me = user();
        let caller = (standing != Standing::SignedOut).then_some(&me);
        let access = kind.map(|kind| Access { kind, standing });
        // An operation looks a room up only for a caller with a session.
        let room = |action| match access {
            Some(access) => authorize(Some(&access), action),
            None => signed_in(caller).and_then(|_| authorize(None, action)),
        };
        let verdict = match check {
            Check::Room(action) => room(*action).map(|()| Verdict::Allowed),
            Check::Page => room(Action::Preview).map(|()| match room(Action::Post) {
                Ok(()) => Verdict::Allowed,
                Err(_) => Verdict::Preview,
            }),
            Check::Directory => authorize_global(caller, GlobalAction::ListDirectory).map(|()| {
                if kind.is_some_and(listed) {
                    Verdict::Listed
                } else {
                    Verdict::Hidden
                }
            }),
            Check::Global(action) => authorize_global(caller, *action).map(|()| Verdict::Allowed),
        };
        verdict.unwrap_or_else(Verdict::Refused)
    }

    fn load() -> Table {
        let text = include_str!("../../tests/fixtures/authz.csv");
        table::parse(text, &table::V2).unwrap_or_else(|errors| {
            panic!("server/tests/fixtures/authz.csv:\n{}", errors.join("\n"))
        })
    }

    /// Every cell of the committed table whose answer is the policy's (not a
    /// transport's) against the policy: the rights must not depend on the
    /// transport, and must be exactly the table's.
    #[test]
    fn policy_matches_the_committed_table() {
        let table = load();
        // (action, kind, standing) -> the transports' expectations.
        let mut triples: BTreeMap<_, Vec<(&str, Expected, Verdict)>> = BTreeMap::new();
        let mut skipped = 0;
        for (cell, &e) in &table.cells {
            match expected(e) {
                Some(v) => triples
                    .entry((cell.action, cell.kind, cell.standing))
                    .or_default()
                    .push((cell.transport, e, v)),
                None => skipped += 1,
            }
        }
        let (mut cells, mut wrong_allows, mut wrong_denies, mut split) = (0, 0, 0, Vec::new());
        let mut report = Vec::new();
        for ((action, kind_name, standing_name), by_transport) in &triples {
            let (_, first_expected, want) = by_transport[0];
            if by_transport.iter().any(|&(_, _, v)| v != want) {
                split.push(format!(
                    "{action},{kind_name},{standing_name}: the table's rights differ by transport: {by_transport:?}"
                ));
                continue;
            }
            cells += by_transport.len();
            let got = actual(&check(action), kind(kind_name), standing(standing_name));
            if got == want {
                continue;
            }
            let wrong = if got.allows_more_than(want) {
                wrong_allows += by_transport.len();
                "wrong allow"
            } else {
                // Refusing what the table allows, or refusing with another code.
                wrong_denies += by_transport.len();
                "wrong deny"
            };
            let transports: Vec<_> = by_transport.iter().map(|(t, _, _)| *t).collect();
            report.push(format!(
                "{wrong}: {action},{kind_name},{standing_name} ({}): the table says {first_expected:?}, the policy {got:?}",
                transports.join("|")
            ));
        }
        println!("policy: {cells} cells, {wrong_allows} wrong allows, {wrong_denies} wrong denies");
        println!(
            "  ({} table rows; {skipped} cells not offered or not the policy's)",
            table.rows
        );
        report.extend(split);
        assert!(
            report.is_empty(),
            "policy vs authz.csv:\n{}",
            report.join("\n")
        );
    }

    /// Rule 2, over every action: a room the caller may not see answers like
    /// no room at all.
    #[test]
    fn invisible_rooms_answer_like_missing_ones() {
        for kind in KINDS {
            for standing in STANDINGS {
                let access = Access { kind, standing };
                let visible = kind == RoomKind::Public
                    || matches!(standing, Standing::Member(_))
                    || (kind == RoomKind::Private && standing == Standing::Invited);
                for action in ACTIONS {
                    let got = authorize(Some(&access), action);
                    if standing == Standing::SignedOut {
                        assert_eq!(got, Err(Denied::SignIn), "{access:?} {action:?}");
                    } else if !visible {
                        assert_eq!(got, authorize(None, action), "{access:?} {action:?}");
                    } else {
                        assert_ne!(got, Err(Denied::NotFound), "{access:?} {action:?}");
                    }
                }
            }
        }
        assert_eq!(signed_in(None::<&UserInfo>), Err(Denied::SignIn));
    }

    /// Rule 7: nothing that has not landed is allowed to anyone, whatever the
    /// role; the refusal for members is `forbidden`.
    #[test]
    fn actions_of_later_issues_are_refused() {
        let later = [
            Action::EditOwn,
            Action::EditAny,
            Action::DeleteOwn,
            Action::DeleteAny,
            Action::React,
            Action::Invite,
            Action::Kick,
            Action::Ban,
            Action::Unban,
            Action::SetRole,
            Action::Mute,
            Action::ChangeKind,
        ];
        for kind in KINDS {
            for standing in STANDINGS {
                for action in later {
                    let got = authorize(Some(&Access { kind, standing }), action);
                    assert!(got.is_err(), "{kind:?} {standing:?} {action:?}");
                    if matches!(standing, Standing::Member(_)) {
                        assert_eq!(
                            got,
                            Err(Denied::Forbidden),
                            "{kind:?} {standing:?} {action:?}"
                        );
                    }
                }
            }
        }
        assert_eq!(
            authorize_global(Some(&user()), GlobalAction::OpenDm),
            Err(Denied::Forbidden)
        );
    }

    /// Moderators are not owners: renaming and the topic stay the owner's.
    #[test]
    fn moderators_get_member_rights_in_issue_11() {
        let access = Access {
            kind: RoomKind::Public,
            standing: Standing::Member(Role::Moderator),
        };
        for action in ACTIONS {
            let as_member = authorize(
                Some(&Access {
                    standing: Standing::Member(Role::Member),
                    ..access
                }),
                action,
            );
            assert_eq!(authorize(Some(&access), action), as_member, "{action:?}");
        }
    }

    #[test]
    fn refusals_map_to_their_codes() {
        let codes: Vec<ErrorCode> = DENIALS.into_iter().map(ErrorCode::from).collect();
        assert_eq!(
            codes,
            [
                ErrorCode::Unauthorized,
                ErrorCode::NotFound,
                ErrorCode::NotMember,
                ErrorCode::Forbidden,
                ErrorCode::Banned,
            ]
        );
        assert_eq!(ApiError::from(Denied::NotFound).retry_after, None);
    }
}
