//! Phone numbers, parsed once at the edge with libphonenumber's metadata (the `phonenumber` crate), never by hand.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::sync::{LazyLock, Mutex, PoisonError};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A valid international phone number, kept as its E.164 digits without the `+` (`17137157533`): the form WhatsApp
/// uses in user JIDs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhoneNumber(String);

/// Why a participant string is not a phone number.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PhoneParseError {
    #[error("is empty")]
    Empty,
    #[error("is a group id (…@g.us), not a person's number")]
    GroupJid,
    #[error("is not a phone number or a WhatsApp user id (use digits with the country code, e.g. +17137157533)")]
    NotANumber,
    #[error("is not a valid phone number for its country code")]
    Invalid,
}

/// The user-JID suffixes people send: `@c.us` (older APIs) and `@s.whatsapp.net` (the protocol).
const USER_SUFFIXES: [&str; 2] = ["@c.us", "@s.whatsapp.net"];

impl PhoneNumber {
    /// Accepts `+1 713-715-7533`, `17137157533`, `0017137157533`, `17137157533@c.us` and
    /// `17137157533@s.whatsapp.net` (a `:device` part is dropped). Numbers without `+` are read as international.
    pub fn parse(input: &str) -> Result<Self, PhoneParseError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(PhoneParseError::Empty);
        }
        if s.ends_with("@g.us") || s.ends_with("-group") {
            return Err(PhoneParseError::GroupJid);
        }
        let mut number = s;
        if let Some((user, server)) = s.split_once('@') {
            if !USER_SUFFIXES.iter().any(|suffix| &suffix[1..] == server) {
                return Err(PhoneParseError::NotANumber);
            }
            number = user.split_once(':').map_or(user, |(u, _device)| u);
        }
        if !number.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.')) {
            return Err(PhoneParseError::NotANumber);
        }
        if number.chars().filter(|c| *c == '+').count() > usize::from(number.starts_with('+')) {
            return Err(PhoneParseError::NotANumber);
        }
        let international = if number.starts_with('+') {
            number.to_owned()
        } else if let Some(rest) = number.strip_prefix("00") {
            format!("+{rest}")
        } else {
            format!("+{number}")
        };
        RECENTLY_CHECKED.check(international)
    }

    /// A number Convene stored itself after [`PhoneNumber::parse`] accepted it (its digits, with or without the
    /// `+`), checked for shape only: libphonenumber's check costs tens of microseconds a number, which a sandbox
    /// world of 100,000 groups paid some 400,000 times at every start. Up to 20 digits, not E.164's 15: `parse`
    /// accepts what libphonenumber's metadata does (a country code of up to 3 digits and up to 17 national digits,
    /// as long German landlines have). `None` when it is not such digits.
    pub fn from_stored(value: &str) -> Option<Self> {
        let digits = value.strip_prefix('+').unwrap_or(value);
        let shaped =
            (1..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
        shaped.then(|| Self(digits.to_owned()))
    }

    /// The digits, country code first, no `+`.
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// `+17137157533`.
    pub fn e164(&self) -> String {
        format!("+{}", self.0)
    }

    /// `17137157533@c.us`, the chat id the Green API and Wawp dialects use.
    pub fn c_us(&self) -> String {
        format!("{}@c.us", self.0)
    }

    /// `17137157533@s.whatsapp.net`, the protocol's user JID.
    pub fn user_jid(&self) -> String {
        format!("{}@s.whatsapp.net", self.0)
    }
}

/// What libphonenumber said of the international spellings it checked last. Its check runs regular expressions found
/// through a cache keyed by hashing each pattern's text, some 30 µs a number: 7% of a group creation's samples.
/// The same numbers come back again and again (a team's agents, backup admins), and the answer for a spelling never
/// changes within a process. Bounded: emptied when full, and spellings longer than any number's are not kept.
struct RecentlyChecked(Mutex<HashMap<String, Result<PhoneNumber, PhoneParseError>>>);

const RECENTLY_CHECKED_MOST: usize = 4096;
/// E.164's 16 characters with room for spaces, dots, dashes and brackets between the digits.
const RECENTLY_CHECKED_LONGEST: usize = 40;

static RECENTLY_CHECKED: LazyLock<RecentlyChecked> = LazyLock::new(|| RecentlyChecked(Mutex::default()));

impl RecentlyChecked {
    /// libphonenumber's answer for `international` (`+` and digits, maybe with spaces, dots, dashes and brackets).
    fn check(&self, international: String) -> Result<PhoneNumber, PhoneParseError> {
        if international.len() > RECENTLY_CHECKED_LONGEST {
            return Self::check_now(&international);
        }
        if let Some(known) = self.0.lock().unwrap_or_else(PoisonError::into_inner).get(&international) {
            return known.clone();
        }
        let checked = Self::check_now(&international);
        let mut known = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if known.len() >= RECENTLY_CHECKED_MOST {
            known.clear();
        }
        known.insert(international, checked.clone());
        checked
    }

    fn check_now(international: &str) -> Result<PhoneNumber, PhoneParseError> {
        let parsed = phonenumber::parse(None, international).map_err(|_| PhoneParseError::Invalid)?;
        if !phonenumber::is_valid(&parsed) {
            return Err(PhoneParseError::Invalid);
        }
        let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
        Ok(PhoneNumber(e164.trim_start_matches('+').to_owned()))
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.0)
    }
}

impl Serialize for PhoneNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.e164())
    }
}

thread_local! {
    /// Set while [`reading_stored`] runs on this thread.
    static READING_STORED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `read`, a deserialization of what Convene wrote itself (the sandbox's world), taking every number in it as
/// stored ([`PhoneNumber::from_stored`]) instead of checking it again as input from outside.
pub fn reading_stored<T>(read: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            READING_STORED.set(self.0);
        }
    }
    let _restore = Restore(READING_STORED.replace(true));
    read()
}

impl<'de> Deserialize<'de> for PhoneNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if READING_STORED.get() {
            return Self::from_stored(&s).ok_or_else(|| {
                serde::de::Error::custom(format!("stored phone number `{s}` is not an international number"))
            });
        }
        Self::parse(&s).map_err(|e| serde::de::Error::custom(format!("phone number {e}")))
    }
}

impl PhoneNumber {
    /// The spellings `parse` reads, as a regular expression for the OpenAPI document: digits with the country code
    /// (an optional leading `+` or `00`; spaces, dots, dashes and brackets between), or a WhatsApp user id.
    pub const PATTERN: &'static str =
        r"^(?:\+?[0-9][0-9 ().-]{5,30}|[0-9]{6,15}(?::[0-9]{1,3})?@(?:c\.us|s\.whatsapp\.net))$";
}

impl utoipa::PartialSchema for PhoneNumber {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::Custom("phone".into())))
            .pattern(Some(Self::PATTERN))
            .description(Some(
                "An international phone number. Read as `+1 713-715-7533`, `17137157533`, `0017137157533`, \
                 `17137157533@c.us` or `17137157533@s.whatsapp.net`, and checked against libphonenumber's metadata \
                 for its country code (format `phone`); always written in E.164 form, `+17137157533`.",
            ))
            .examples([serde_json::json!("+17137157533")])
            .into()
    }
}

impl utoipa::ToSchema for PhoneNumber {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_the_documented_pattern_refuses_is_refused_by_parse_too() {
        let pattern = regex::Regex::new(PhoneNumber::PATTERN).unwrap();
        for ok in
            ["+1 713-715-7533", "17137157533", "0017137157533", "17137157533@c.us", "17137157533:12@s.whatsapp.net"]
        {
            assert!(pattern.is_match(ok), "{ok}");
            assert!(PhoneNumber::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "abc", "+", "++17137157533", "1713715753a", "120363043968066561@g.us", "17137157533@x.us"] {
            assert!(!pattern.is_match(bad), "{bad}");
            assert!(PhoneNumber::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_accepted_spelling_gives_the_same_number() {
        for input in [
            "+1 713-715-7533",
            "17137157533",
            "0017137157533",
            "17137157533@c.us",
            "17137157533@s.whatsapp.net",
            "17137157533:12@s.whatsapp.net",
            " +1 (713) 715.7533 ",
        ] {
            let n = PhoneNumber::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(n.digits(), "17137157533", "{input:?}");
        }
    }

    #[test]
    fn numbers_from_the_seed_documents_parse() {
        for input in ["+595981048477", "+18647351567", "+447700176576", "79001234568@c.us", "+12123334444"] {
            assert!(PhoneNumber::parse(input).is_ok(), "{input}");
        }
    }

    #[test]
    fn a_spelling_checked_again_gets_the_same_answer_and_the_answers_kept_stay_bounded() {
        for _ in 0..2 {
            assert_eq!(PhoneNumber::parse("+1 713-715-7533").unwrap().digits(), "17137157533");
            assert_eq!(PhoneNumber::parse("+1 000"), Err(PhoneParseError::Invalid));
        }
        for n in 0..RECENTLY_CHECKED_MOST + 10 {
            let input = format!("+1 713 71{:05}", n % 100_000);
            assert_eq!(PhoneNumber::parse(&input).unwrap().digits(), format!("171371{:05}", n % 100_000));
            assert!(RECENTLY_CHECKED.0.lock().unwrap().len() <= RECENTLY_CHECKED_MOST);
        }
    }

    #[test]
    fn group_jids_are_refused_as_people() {
        assert_eq!(PhoneNumber::parse("120363043968066561@g.us"), Err(PhoneParseError::GroupJid));
        assert_eq!(PhoneNumber::parse("120363019502650977-group"), Err(PhoneParseError::GroupJid));
    }

    #[test]
    fn junk_is_not_a_number_and_impossible_numbers_are_invalid() {
        assert_eq!(PhoneNumber::parse(""), Err(PhoneParseError::Empty));
        assert_eq!(PhoneNumber::parse("   "), Err(PhoneParseError::Empty));
        assert_eq!(PhoneNumber::parse("bob"), Err(PhoneParseError::NotANumber));
        assert_eq!(PhoneNumber::parse("123@lid"), Err(PhoneParseError::NotANumber));
        assert_eq!(PhoneNumber::parse("1+2"), Err(PhoneParseError::NotANumber));
        assert_eq!(PhoneNumber::parse("+1 000"), Err(PhoneParseError::Invalid));
        assert_eq!(PhoneNumber::parse("12345"), Err(PhoneParseError::Invalid));
    }

    #[test]
    fn renderings_are_consistent() {
        let n = PhoneNumber::parse("+1 713 715 7533").unwrap();
        assert_eq!(n.e164(), "+17137157533");
        assert_eq!(n.c_us(), "17137157533@c.us");
        assert_eq!(n.user_jid(), "17137157533@s.whatsapp.net");
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"+17137157533\"");
    }

    #[test]
    fn stored_numbers_are_checked_for_shape_only_and_only_while_reading_stored() {
        assert_eq!(PhoneNumber::from_stored("17137157533").unwrap().digits(), "17137157533");
        assert_eq!(PhoneNumber::from_stored("+17137157533").unwrap().digits(), "17137157533");
        for bad in ["", "+", "bob", "0171", "+1 713", "123456789012345678901", "17137157533@c.us"] {
            assert_eq!(PhoneNumber::from_stored(bad), None, "{bad:?}");
        }
        // +1 000 has the shape but no country has such a number: refused as input, read back when stored.
        let json = "[\"+1000\"]";
        assert!(serde_json::from_str::<Vec<PhoneNumber>>(json).is_err());
        let stored: Vec<PhoneNumber> = reading_stored(|| serde_json::from_str(json)).unwrap();
        assert_eq!(stored[0].digits(), "1000");
        assert!(reading_stored(|| serde_json::from_str::<Vec<PhoneNumber>>("[\"bob\"]")).is_err());
        // The longest numbers libphonenumber accepts are read back too.
        let long = PhoneNumber::parse("+49 30 1234567890123").unwrap();
        assert!(long.digits().len() > 15, "{long}");
        assert_eq!(PhoneNumber::from_stored(long.digits()), Some(long.clone()));
        let written = serde_json::to_string(&[&long]).unwrap();
        assert_eq!(reading_stored(|| serde_json::from_str::<Vec<PhoneNumber>>(&written)).unwrap(), [long]);
        // The mode ends with the read, also when it fails.
        assert!(serde_json::from_str::<Vec<PhoneNumber>>(json).is_err());
        assert!(std::panic::catch_unwind(|| reading_stored(|| panic!("torn"))).is_err());
        assert!(serde_json::from_str::<Vec<PhoneNumber>>(json).is_err());
    }
}
