-- 008_bhavcopy_contracts.sql — what the bhavcopy ingest (engine/backtest/ingest.py) and the
-- NSE archive downloader (engine/backtest/nse_archive.py) need besides bhavcopy_ohlc's
-- existing columns (unchanged in name and meaning).
--
-- * bhavcopy_ohlc.instrument_id / contract_name: UDiFF FinInstrmId / FinInstrmNm (NULL for
--   legacy fo*bhav rows). Both stay the same when NSE re-dates a live contract (from EOD
--   2025-08-28 Thursday expiries became Tuesdays: 2025-09-25 -> 2025-09-30, 2025-12-24 ->
--   2025-12-30, ...); FinInstrmId is reused for other contracts once one expires.
-- * bhavcopy_redated: old expiry -> new expiry per underlying, filled at ingest by comparing
--   each day with the neighbouring ingested days (same name, or same id + strike + type while
--   the old contract is alive). redated_on = first trade date seen with the new expiry.
-- * bhavcopy_downloads: one row per session the downloader asked for (resumable; a 404 on a
--   trading day is 'not_published' and asked again after a day).

ALTER TABLE bhavcopy_ohlc ADD COLUMN IF NOT EXISTS instrument_id text;
ALTER TABLE bhavcopy_ohlc ADD COLUMN IF NOT EXISTS contract_name text;

CREATE TABLE IF NOT EXISTS bhavcopy_redated (
    symbol        text    NOT NULL CHECK (symbol IN ('NIFTY', 'BANKNIFTY')),
    old_expiry    date    NOT NULL,
    new_expiry    date    NOT NULL,
    redated_on    date    NOT NULL,
    contracts     integer NOT NULL DEFAULT 0,
    example_name  text,
    PRIMARY KEY (symbol, old_expiry, new_expiry),
    CHECK (old_expiry <> new_expiry)
);

CREATE TABLE IF NOT EXISTS bhavcopy_downloads (
    trade_date  date        PRIMARY KEY,
    status      text        NOT NULL
                            CHECK (status IN ('ok', 'not_published', 'error', 'forbidden')),
    url         text        NOT NULL DEFAULT '',
    format      text        NOT NULL DEFAULT '',
    rows        integer     NOT NULL DEFAULT 0,
    attempts    integer     NOT NULL DEFAULT 1,
    fetched_at  timestamptz NOT NULL DEFAULT now(),
    error       text        NOT NULL DEFAULT ''
);
