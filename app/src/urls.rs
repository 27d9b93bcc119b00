//! The app's URLs, built in one place.

/// Longest slug in a v2 room URL, in bytes (all ASCII).
pub const MAX_SLUG_LEN: usize = 48;

/// The path of a room's page under protocol v1 (`/rooms/<name>`).
pub fn room_href(name: &str) -> String {
    format!("/rooms/{}", percent_encode(name))
}

/// The path of a room's page by id (`/r/<id>/<slug>`). The slug only makes
/// the URL readable: any slug (or none) opens the same room, so renaming a
/// room breaks no link.
pub fn room_href_v2(id: i64, name: &str) -> String {
    format!("/r/{id}/{}", room_slug(name))
}

/// A room name as a URL slug: ASCII letters and digits lower-cased, every
/// run of other characters one `-` (none at either end), at most
/// [`MAX_SLUG_LEN`] characters, and `room` when nothing is left.
pub fn room_slug(name: &str) -> String {
    let mut slug = String::with_capacity(name.len().min(MAX_SLUG_LEN));
    let mut dash = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if dash && !slug.is_empty() {
                slug.push('-');
            }
            dash = false;
            slug.push(c.to_ascii_lowercase());
        } else {
            dash = true;
        }
        if slug.len() >= MAX_SLUG_LEN {
            break;
        }
    }
    slug.truncate(MAX_SLUG_LEN);
    while slug.ends_with('-') {
        slug.pop();
    }
    if slug.is_empty() {
        slug.push_str("room");
    }
    slug
}

/// Percent-encodes everything but unreserved characters (RFC 3986), for a
/// path segment or a query value.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_paths_escape_everything_but_unreserved() {
        assert_eq!(room_href("a b"), "/rooms/a%20b");
        assert_eq!(room_href("100%"), "/rooms/100%25");
        assert_eq!(room_href("ünï/?#&"), "/rooms/%C3%BCn%C3%AF%2F%3F%23%26");
        assert_eq!(room_href("a-b_c.d~e"), "/rooms/a-b_c.d~e");
    }

    #[test]
    fn slugs_keep_ascii_letters_and_digits() {
        assert_eq!(room_slug("Team Chat"), "team-chat");
        assert_eq!(room_slug("  Team -- Chat!! "), "team-chat");
        assert_eq!(room_slug("Café ünï 2"), "caf-n-2");
        assert_eq!(room_slug("a_b.c~d"), "a-b-c-d");
        assert_eq!(room_slug("R2D2"), "r2d2");
        assert_eq!(room_slug(""), "room");
        assert_eq!(room_slug("ünï"), "n");
        assert_eq!(room_slug("éà"), "room");
        assert_eq!(room_slug("---"), "room");
        assert_eq!(room_slug("日本語 chat"), "chat");
    }

    #[test]
    fn slugs_are_at_most_48_characters_without_a_trailing_dash() {
        assert_eq!(room_slug(&"a".repeat(100)), "a".repeat(48));
        // The 48th character would be a dash: it goes.
        let name = format!("{} b", "a".repeat(47));
        assert_eq!(room_slug(&name), "a".repeat(47));
        let name = format!("{} bcd", "a".repeat(46));
        assert_eq!(room_slug(&name), format!("{}-b", "a".repeat(46)));
        for name in ["x y ".repeat(40), "é".repeat(100), "ab-".repeat(30)] {
            let slug = room_slug(&name);
            assert!(slug.len() <= MAX_SLUG_LEN, "{slug}");
            assert!(!slug.starts_with('-') && !slug.ends_with('-'), "{slug}");
        }
    }

    #[test]
    fn v2_room_paths_are_by_id() {
        assert_eq!(room_href_v2(7, "Team Chat"), "/r/7/team-chat");
        assert_eq!(room_href_v2(12, "!!!"), "/r/12/room");
    }
}
