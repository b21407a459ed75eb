-- The electronic civil-status store (Ministry of Justice): people, and the acts registered
-- about them by communes. Acts are append-only: a correction is a new act that names the
-- act it corrects. Every act carries its registering commune as a code with the code list
-- it belongs to (pre-2025 or 2025: new commune codes reuse old ones).

-- Digitised paper books give partial dates: 'YYYY', 'YYYY-MM' or 'YYYY-MM-DD'.
CREATE DOMAIN partial_date AS text
    CHECK (VALUE ~ '^[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?$');

CREATE DOMAIN code_list AS text CHECK (VALUE IN ('pre-2025', '2025'));

-- A place value (DESIGN.md, Places): {"text", "code", "code_list"} as recorded, plus the
-- derived {"current": {"province_code", "ward_code", "name"}, "quality"}.
CREATE DOMAIN place AS jsonb
    CHECK (VALUE IS NULL OR (jsonb_typeof(VALUE) = 'object' AND VALUE ? 'text'));

CREATE TABLE person (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pin                 text UNIQUE,  -- NULL until the population side assigns one
    full_name           text NOT NULL,
    birth_date          partial_date,
    sex                 text CHECK (sex IN ('male', 'female', 'unknown')),
    place_of_birth      place,
    hometown            place,
    ethnicity           text,
    nationality         text,
    father              text,
    mother              text,
    marital_status      text CHECK (marital_status IN ('single', 'married', 'divorced', 'widowed')),
    spouse              text,         -- the spouse's PIN
    date_of_death       partial_date,
    permanent_residence place,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE person IS 'One person as the civil-status acts describe them; shared with the population store through civsync.';

-- Columns every act has: where and under which book and number it was registered.
CREATE TABLE act (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    book              text NOT NULL,
    number            text NOT NULL,
    registered_on     date NOT NULL,
    commune_code      text NOT NULL,
    commune_code_list code_list NOT NULL
);

CREATE TABLE birth_registration (
    LIKE act INCLUDING ALL,
    person_id      bigint NOT NULL REFERENCES person,
    full_name      text NOT NULL,
    birth_date     partial_date,
    sex            text CHECK (sex IN ('male', 'female', 'unknown')),
    place_of_birth place,
    father         text,
    mother         text,
    ethnicity      text,
    nationality    text,
    UNIQUE (commune_code_list, commune_code, book, number)
);

CREATE TABLE marriage_registration (
    LIKE act INCLUDING ALL,
    spouse_a_id bigint NOT NULL REFERENCES person,
    spouse_b_id bigint NOT NULL REFERENCES person,
    married_on  date NOT NULL,
    CHECK (spouse_a_id <> spouse_b_id),
    UNIQUE (commune_code_list, commune_code, book, number)
);

CREATE TABLE death_registration (
    LIKE act INCLUDING ALL,
    person_id      bigint NOT NULL REFERENCES person,
    date_of_death  partial_date NOT NULL,
    place_of_death place,
    UNIQUE (commune_code_list, commune_code, book, number)
);

-- A change or correction of civil status: which act, which field, from what to what, why.
CREATE TABLE correction (
    LIKE act INCLUDING ALL,
    person_id    bigint NOT NULL REFERENCES person,
    corrects     text NOT NULL
        CHECK (corrects IN ('birth_registration', 'marriage_registration', 'death_registration')),
    corrected_id bigint NOT NULL,
    field        text NOT NULL,
    old_value    text,
    new_value    text,
    reason       text NOT NULL,
    UNIQUE (commune_code_list, commune_code, book, number)
);

DROP TABLE act;  -- only a template for the columns above

CREATE FUNCTION acts_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: register a correction instead', TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON birth_registration
    FOR EACH ROW EXECUTE FUNCTION acts_are_append_only();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON marriage_registration
    FOR EACH ROW EXECUTE FUNCTION acts_are_append_only();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON death_registration
    FOR EACH ROW EXECUTE FUNCTION acts_are_append_only();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON correction
    FOR EACH ROW EXECUTE FUNCTION acts_are_append_only();

-- A correction must name an act that exists, of the kind it says.
CREATE FUNCTION correction_names_an_act() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE found boolean;
BEGIN
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE id = $1)', NEW.corrects)
        INTO found USING NEW.corrected_id;
    IF NOT found THEN
        RAISE EXCEPTION 'correction names % %, which does not exist', NEW.corrects, NEW.corrected_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER names_an_act BEFORE INSERT ON correction
    FOR EACH ROW EXECUTE FUNCTION correction_names_an_act();

-- Capture publishes whole old rows (DESIGN: before/after), so every table is FULL.
ALTER TABLE person REPLICA IDENTITY FULL;
ALTER TABLE birth_registration REPLICA IDENTITY FULL;
ALTER TABLE marriage_registration REPLICA IDENTITY FULL;
ALTER TABLE death_registration REPLICA IDENTITY FULL;
ALTER TABLE correction REPLICA IDENTITY FULL;
