//! Times as an operator reads them: "in 4 min", "2 h ago", with the exact UTC time in a `<time>` element.

use convene_core::Timestamp;
use maud::{Markup, html};

/// `at` relative to `now`, in a `<time>` whose `datetime` and title give it exactly.
pub fn relative(at: Timestamp, now: Timestamp) -> Markup {
    html! { time datetime=(at) title=(at) { (words(at, now)) } }
}

/// "now" within a second, else "in 4 min" or "4 min ago" in the largest unit that fits.
pub fn words(at: Timestamp, now: Timestamp) -> String {
    let (future, span) = if at >= now { (true, now.until(at)) } else { (false, at.until(now)) };
    let secs = span.as_secs();
    let amount = match secs {
        0 => return "now".to_owned(),
        1..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    };
    if future { format!("in {amount}") } else { format!("{amount} ago") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_in_the_largest_unit_that_fits_and_say_which_way() {
        let now = Timestamp::from_millis(1_800_000_000_000);
        let at = |secs: i64| Timestamp::from_millis(1_800_000_000_000 + secs * 1000);
        assert_eq!(words(now, now), "now");
        assert_eq!(words(at(42), now), "in 42 s");
        assert_eq!(words(at(-300), now), "5 min ago");
        assert_eq!(words(at(7_300), now), "in 2 h");
        assert_eq!(words(at(-3 * 86_400), now), "3 d ago");
    }
}
