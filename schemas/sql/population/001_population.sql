-- The National Population Database (Ministry of Public Security): one citizen per PIN, with
-- the PIN's history, residences with their dates, households and ID cards.

CREATE DOMAIN partial_date AS text
    CHECK (VALUE ~ '^[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?$');

-- A place value (DESIGN.md, Places); see the civil-status store's definition.
CREATE DOMAIN place AS jsonb
    CHECK (VALUE IS NULL OR (jsonb_typeof(VALUE) = 'object' AND VALUE ? 'text'));

CREATE DOMAIN pin AS text CHECK (VALUE ~ '^[0-9]{12}$');

CREATE TABLE household (
    id         text PRIMARY KEY,
    address    place NOT NULL,
    created_on date
);

CREATE TABLE citizen (
    pin                 pin PRIMARY KEY,
    full_name           text NOT NULL,
    birth_date          partial_date,
    sex                 text CHECK (sex IN ('male', 'female')),
    place_of_birth      place,
    hometown            place,
    ethnicity           text,
    nationality         text,
    religion            text,
    marital_status      text CHECK (marital_status IN ('single', 'married', 'divorced', 'widowed')),
    spouse              pin,          -- the spouse's PIN
    date_of_death       partial_date,
    permanent_residence place,
    temporary_residence place,
    current_residence   place,
    household           text REFERENCES household,
    relation_to_head    text,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE citizen IS 'One citizen per PIN; the residence columns hold the residence in force (history in residence).';

-- A PIN is re-issued after a sex re-determination, a birth-year correction or a keying
-- error; the old PIN stays here, never reused.
CREATE TABLE pin_history (
    old_pin    pin PRIMARY KEY,
    new_pin    pin NOT NULL REFERENCES citizen ON UPDATE CASCADE,
    changed_on date NOT NULL,
    reason     text NOT NULL
        CHECK (reason IN ('sex_redetermination', 'birth_year_correction', 'keying_error')),
    CHECK (old_pin <> new_pin)
);

CREATE TABLE residence (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pin       pin NOT NULL REFERENCES citizen ON UPDATE CASCADE,
    kind      text NOT NULL CHECK (kind IN ('permanent', 'temporary', 'current')),
    place     place NOT NULL,
    from_date date NOT NULL,
    to_date   date,
    CHECK (to_date IS NULL OR to_date >= from_date)
);
CREATE UNIQUE INDEX residence_in_force ON residence (pin, kind) WHERE to_date IS NULL;

CREATE TABLE id_card (
    number     text PRIMARY KEY,
    pin        pin NOT NULL REFERENCES citizen ON UPDATE CASCADE,
    issued_on  date NOT NULL,
    expires_on date,
    CHECK (expires_on IS NULL OR expires_on > issued_on)
);

ALTER TABLE household REPLICA IDENTITY FULL;
ALTER TABLE citizen REPLICA IDENTITY FULL;
ALTER TABLE pin_history REPLICA IDENTITY FULL;
ALTER TABLE residence REPLICA IDENTITY FULL;
ALTER TABLE id_card REPLICA IDENTITY FULL;
