-- Acts record the PIN of each person they concern, as the registration forms have since
-- 2016. It is NULL on a legacy act digitised without one, and on a birth registered before
-- the population store issued the child's PIN: civsync then keys the person by its civil id
-- ('civil#<person id>') until the PIN arrives, and writes the PIN back to person.pin.
ALTER TABLE birth_registration ADD COLUMN pin text;
ALTER TABLE death_registration ADD COLUMN pin text;
ALTER TABLE correction ADD COLUMN pin text;
ALTER TABLE marriage_registration ADD COLUMN spouse_a_pin text, ADD COLUMN spouse_b_pin text;
