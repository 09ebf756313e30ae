"""NSE F&O-segment trading holidays 2024-2026 and special weekend sessions (data only).

Dates: union of the three snapshots of ``citadel-hq/nse_holidays`` (FO segment of NSE
``holiday-master?type=trading``; commits f5730c7, 15f1585, e297a22) plus 2024-11-01 (Diwali
Laxmi Pujan, listed by the earlier commit 726bada). Descriptions: nse-data.md section 2.1.
Weekend dates are kept as NSE publishes them. Muhurat days are holidays for the regular
session (an evening Muhurat session is held; see ``MUHURAT_DAYS``).
"""

from __future__ import annotations

from datetime import date

NSE_FO_HOLIDAYS: dict[date, str] = {
    # 2024
    date(2024, 1, 22): "Special holiday (Shri Ram Lalla Pran Pratishtha)",
    date(2024, 1, 26): "Republic Day",
    date(2024, 3, 8): "Mahashivratri",
    date(2024, 3, 25): "Holi",
    date(2024, 3, 29): "Good Friday",
    date(2024, 4, 11): "Id-Ul-Fitr (Ramadan Eid)",
    date(2024, 4, 14): "Dr. Baba Saheb Ambedkar Jayanti",
    date(2024, 4, 17): "Shri Ram Navami",
    date(2024, 4, 21): "Shri Mahavir Jayanti",
    date(2024, 5, 1): "Maharashtra Day",
    date(2024, 5, 20): "General Parliamentary Elections (Mumbai)",
    date(2024, 6, 17): "Bakri Id",
    date(2024, 7, 17): "Moharram",
    date(2024, 8, 15): "Independence Day",
    date(2024, 9, 7): "Ganesh Chaturthi",
    date(2024, 10, 2): "Mahatma Gandhi Jayanti",
    date(2024, 10, 12): "Dussehra",
    date(2024, 11, 1): "Diwali Laxmi Pujan (Muhurat session)",
    date(2024, 11, 2): "Diwali-Balipratipada",
    date(2024, 11, 15): "Gurunanak Jayanti",
    date(2024, 11, 20): "Maharashtra Assembly Election",
    date(2024, 12, 25): "Christmas",
    # 2025
    date(2025, 1, 26): "Republic Day",
    date(2025, 2, 26): "Mahashivratri",
    date(2025, 3, 14): "Holi",
    date(2025, 3, 31): "Id-Ul-Fitr (Ramadan Eid)",
    date(2025, 4, 6): "Shri Ram Navami",
    date(2025, 4, 10): "Shri Mahavir Jayanti",
    date(2025, 4, 14): "Dr. Baba Saheb Ambedkar Jayanti",
    date(2025, 4, 18): "Good Friday",
    date(2025, 5, 1): "Maharashtra Day",
    date(2025, 6, 7): "Bakri Id",
    date(2025, 7, 6): "Muharram",
    date(2025, 8, 15): "Independence Day",
    date(2025, 8, 27): "Ganesh Chaturthi",
    date(2025, 10, 2): "Mahatma Gandhi Jayanti/Dussehra",
    date(2025, 10, 21): "Diwali Laxmi Pujan (Muhurat session)",
    date(2025, 10, 22): "Diwali-Balipratipada",
    date(2025, 11, 5): "Prakash Gurpurb Sri Guru Nanak Dev",
    date(2025, 12, 25): "Christmas",
    # 2026
    date(2026, 1, 15): "Municipal Corporation Election - Maharashtra",
    date(2026, 1, 26): "Republic Day",
    date(2026, 2, 15): "Mahashivratri",
    date(2026, 3, 3): "Holi",
    date(2026, 3, 21): "Id-Ul-Fitr (Ramadan Eid)",
    date(2026, 3, 26): "Shri Ram Navami",
    date(2026, 3, 31): "Shri Mahavir Jayanti",
    date(2026, 4, 3): "Good Friday",
    date(2026, 4, 14): "Dr. Baba Saheb Ambedkar Jayanti",
    date(2026, 5, 1): "Maharashtra Day",
    date(2026, 5, 28): "Bakri Id",
    date(2026, 6, 26): "Muharram",
    date(2026, 8, 15): "Independence Day",
    date(2026, 9, 14): "Ganesh Chaturthi",
    date(2026, 10, 2): "Mahatma Gandhi Jayanti",
    date(2026, 10, 20): "Dussehra",
    date(2026, 11, 8): "Diwali Laxmi Pujan (Muhurat session)",
    date(2026, 11, 10): "Diwali-Balipratipada",
    date(2026, 11, 24): "Prakash Gurpurb Sri Guru Nanak Dev",
    date(2026, 12, 25): "Christmas",
}

#: Days whose regular session is closed but an evening Muhurat session is held.
MUHURAT_DAYS: frozenset[date] = frozenset(
    {date(2024, 11, 1), date(2025, 10, 21), date(2026, 11, 8)})

#: Weekend days with a full 09:15-15:30 live session (Union Budget days).
SPECIAL_SESSIONS: dict[date, str] = {
    date(2025, 2, 1): "Union Budget (Saturday live session)",
    date(2026, 2, 1): "Union Budget (Sunday live session)",
}

#: Approximate day each year's holiday list became known to the exchange's contract
#: calendar (NSE circulars appear in mid-December; the bhavcopies show the 2026 list in use
#: by 2025-12-29 and not yet on 2025-09-11). Before it, only fixed-date holidays are known.
HOLIDAY_LIST_PUBLISHED: dict[int, date] = {
    2024: date(2023, 12, 15),
    2025: date(2024, 12, 15),
    2026: date(2025, 12, 15),
}

#: Fixed-date national holidays NSE assumes when dating long-dated contracts of years
#: whose list is not yet published (e.g. 2029-12-25 pushes the Dec-2029 expiry to the 24th).
FIXED_DATE_HOLIDAYS: tuple[tuple[int, int], ...] = ((1, 26), (5, 1), (8, 15), (10, 2), (12, 25))
