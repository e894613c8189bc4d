//! Calendar and clock families: weekdays after/before, dates after a number of days (non-leap
//! year) and clock times after a number of minutes (12-hour clock without am/pm).

use super::words::{MONTHS, MONTH_DAYS, WEEKDAYS};
use super::Item;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The index in [`WEEKDAYS`] of the day `days` after (`forward`) or before weekday `start`.
pub(crate) fn shifted_weekday(start: usize, days: usize, forward: bool) -> usize {
    let rest = days % 7;
    if forward {
        (start + rest) % 7
    } else {
        (start + 7 - rest) % 7
    }
}

fn weekday_shift(rng: &mut ChaCha8Rng, forward: bool) -> Item {
    let start = rng.gen_range(0..7usize);
    let days = rng.gen_range(1..=60usize);
    let (weeks, rest) = (days / 7, days % 7);
    let end = shifted_weekday(start, days, forward);
    let direction = if forward { "after" } else { "before" };
    let (from, to) = (WEEKDAYS[start], WEEKDAYS[end]);
    let plural = if days == 1 { "day" } else { "days" };
    let rationale = if weeks == 0 {
        format!("Counting {days} {plural} {direction} {from} gives {to}.")
    } else if rest == 0 {
        format!("{days} days is exactly {weeks} weeks, so it is {to} again.")
    } else {
        let weeks_word = if weeks == 1 { "week" } else { "weeks" };
        format!(
            "{days} days is {weeks} {weeks_word} and {rest} more. Whole weeks keep the day, and {rest} {} {direction} {from} is {to}.",
            if rest == 1 { "day" } else { "days" }
        )
    };
    Item::new(
        format!("What day of the week is {days} {plural} {direction} {from}?"),
        to,
    )
    .rationale(rationale)
}

/// The weekday some days after a given one.
pub(crate) fn day_after(rng: &mut ChaCha8Rng) -> Item {
    weekday_shift(rng, true)
}

/// The weekday some days before a given one (held out: the reverse of `day_after`).
pub(crate) fn day_before(rng: &mut ChaCha8Rng) -> Item {
    weekday_shift(rng, false)
}

/// A date some days later; at most one month boundary is crossed.
pub(crate) fn date_add(rng: &mut ChaCha8Rng) -> Item {
    let month = rng.gen_range(0..12usize);
    let day = rng.gen_range(1..=MONTH_DAYS[month]);
    let add = rng.gen_range(1..=28u32);
    let sum = day + add;
    let (name, length) = (MONTHS[month], MONTH_DAYS[month]);
    let (answer, rationale) = if sum <= length {
        (
            format!("{name} {sum}"),
            format!("{day} + {add} = {sum}, and {name} has {length} days, so it is {name} {sum}."),
        )
    } else {
        let next = MONTHS[(month + 1) % 12];
        let into = sum - length;
        (
            format!("{next} {into}"),
            format!(
                "{day} + {add} = {sum}, but {name} has only {length} days, so it is {sum} - {length} = {into} days into {next}: {next} {into}."
            ),
        )
    };
    Item::new(
        format!("What is the date {add} days after {name} {day}?"),
        answer,
    )
    .rationale(rationale)
}

/// A clock time some minutes later.
pub(crate) fn time_add(rng: &mut ChaCha8Rng) -> Item {
    let hour = rng.gen_range(1..=12u32);
    let minute = 5 * rng.gen_range(0..12u32);
    let add = 5 * rng.gen_range(1..=24u32);
    let total = minute + add;
    let (carry, new_minute) = (total / 60, total % 60);
    let new_hour = (hour - 1 + carry) % 12 + 1;
    let rationale = if carry == 0 {
        format!("{minute} + {add} = {total} minutes, still within the hour, so it is {new_hour}:{new_minute:02}.")
    } else {
        format!(
            "{minute} + {add} = {total} minutes, which is {carry} hour{} and {new_minute} minutes, so it is {new_hour}:{new_minute:02}.",
            if carry == 1 { "" } else { "s" }
        )
    };
    Item::new(
        format!("What time is it {add} minutes after {hour}:{minute:02}?"),
        format!("{new_hour}:{new_minute:02}"),
    )
    .rationale(rationale)
}
