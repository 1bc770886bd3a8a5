/**
 * ISO-8601 UTC with milliseconds, e.g. `2024-11-20T10:00:00.000Z`, exactly as `Date#toISOString` writes it.
 * Written out by hand for the instants of years 1970–9999 because every timeline event and profile view renders
 * several: about a third of `toISOString`'s cost (≈ 170 against 500 ns), which was ≈ 7% of a 100-event page.
 */

const UNTIL_YEAR_10000 = 253_402_300_800_000;
const DAY_MS = 86_400_000;

const two = (n: number): string => (n < 10 ? `0${n}` : `${n}`);
const three = (n: number): string => (n < 10 ? `00${n}` : n < 100 ? `0${n}` : `${n}`);

export function toIsoUtc(epochMs: number): string {
  if (!(epochMs >= 0 && epochMs < UNTIL_YEAR_10000) || !Number.isInteger(epochMs)) {
    return new Date(epochMs).toISOString();
  }
  const days = Math.floor(epochMs / DAY_MS);
  // The proleptic Gregorian date of a day number, in 400-year eras starting on 1 March (H. Hinnant's civil_from_days).
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const dayOfEra = z - era * 146_097;
  const yearOfEra = Math.floor(
    (dayOfEra - Math.floor(dayOfEra / 1460) + Math.floor(dayOfEra / 36_524) - Math.floor(dayOfEra / 146_096)) / 365,
  );
  const dayOfYear = dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const shiftedMonth = Math.floor((5 * dayOfYear + 2) / 153);
  const day = dayOfYear - Math.floor((153 * shiftedMonth + 2) / 5) + 1;
  const month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9;
  const year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0);

  let rest = epochMs - days * DAY_MS;
  const hours = Math.floor(rest / 3_600_000);
  rest -= hours * 3_600_000;
  const minutes = Math.floor(rest / 60_000);
  rest -= minutes * 60_000;
  const seconds = Math.floor(rest / 1000);
  return `${year}-${two(month)}-${two(day)}T${two(hours)}:${two(minutes)}:${two(seconds)}.${three(rest - seconds * 1000)}Z`;
}
