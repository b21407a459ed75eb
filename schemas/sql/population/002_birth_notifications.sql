-- Births registered in the civil-status store without a PIN reach the population store here,
-- filed by civsync under its key of the civil-status person ('civil#<person id>'). The
-- population store issues the PIN (issue_pins below, standing in for the ministry's issuing
-- process) and records it on the notification. civsync captures that as an identity link:
-- the person moves to the PIN, civsync creates the citizen from the merged record and writes
-- the PIN back to the civil-status person. One event carries the link, so no citizen can
-- reach civil-status ahead of it as a second person.
CREATE TABLE birth_notification (
    civil_person   text PRIMARY KEY CHECK (civil_person ~ '^civil#[0-9]+$'),
    full_name      text NOT NULL,
    birth_date     partial_date NOT NULL,
    sex            text NOT NULL CHECK (sex IN ('male', 'female')),
    place_of_birth place,
    father         text,
    mother         text,
    ethnicity      text,
    nationality    text,
    received_at    timestamptz NOT NULL DEFAULT now(),
    pin            pin UNIQUE,  -- the PIN issued; the citizen follows through civsync
    issued_at      timestamptz
);
ALTER TABLE birth_notification REPLICA IDENTITY FULL;

CREATE SEQUENCE pin_serial;

-- Issue a PIN for every pending notification: PPP the issuing province (pre-2025 code),
-- C century and sex, YY the birth year, then a serial not used by any PIN, current or former.
CREATE FUNCTION issue_pins(province text DEFAULT '001') RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n birth_notification;
    born integer;
    issued text;
    count integer := 0;
BEGIN
    IF province !~ '^[0-9]{3}$' THEN
        RAISE EXCEPTION 'province must be a 3-digit pre-2025 code, not %', province;
    END IF;
    FOR n IN SELECT * FROM birth_notification WHERE pin IS NULL ORDER BY received_at FOR UPDATE
    LOOP
        born := left(n.birth_date, 4)::integer;
        LOOP
            issued := province || ((born / 100 - 19) * 2 + (n.sex = 'female')::integer)::text
                || lpad((born % 100)::text, 2, '0') || lpad(nextval('pin_serial')::text, 6, '0');
            EXIT WHEN NOT EXISTS (SELECT 1 FROM citizen WHERE pin = issued)
                  AND NOT EXISTS (SELECT 1 FROM pin_history WHERE old_pin = issued)
                  AND NOT EXISTS (SELECT 1 FROM birth_notification WHERE pin = issued);
        END LOOP;
        UPDATE birth_notification SET pin = issued, issued_at = now()
            WHERE civil_person = n.civil_person;
        count := count + 1;
    END LOOP;
    RETURN count;
END $$;
