-- dynamodb_json(item, item_types): a changelog row's lean image as DynamoDB JSON again.
--
-- `item` is the image as plain JSON and `item_types` its type sidecar (docs/bigquery.md, "The lean
-- row"), both as JSON text (TO_JSON_STRING of the columns); the result is the item as DynamoDB
-- JSON text ({"id":{"S":"u1"},"tags":{"SS":["a","b"]},...}), NULL when `item` is NULL.
-- Numbers come back as their exact value: integers in `item` never pass 2**53 (larger ones are
-- strings tagged "N"), and JavaScript's shortest text of a float is the value ddb2bq stored.
-- The function body (after LANGUAGE js AS) is run by tests/unit/test_dynamodb_json_udf.py with Node.js
-- against ddb2bq.images.dynamodb_item.
--
-- Usage (rows of the earlier format keep new_image; COALESCE reads both):
--   SELECT event_id,
--          COALESCE(TO_JSON_STRING(new_image),
--                   dynamodb_json(TO_JSON_STRING(item), TO_JSON_STRING(item_types))) AS image
--   FROM `analytics-prod.dynamodb.orders_changes`;
-- (drop `new_image` from the COALESCE for a changelog made with the lean row: it has no such
-- column.)

CREATE TEMP FUNCTION dynamodb_json(item STRING, item_types STRING)
RETURNS STRING
LANGUAGE js AS r"""
  function typed(value, tag) {
    if (typeof tag === "string") {
      if (tag === "N") return {N: String(value)};
      if (tag === "NS") return {NS: value.map(String)};
      const out = Object.create(null);
      out[tag] = value;  // B (base64 text), SS, BS (base64 texts)
      return out;
    }
    if (value === null) return {NULL: true};
    if (typeof value === "string") return {S: value};
    if (typeof value === "boolean") return {BOOL: value};
    if (typeof value === "number") return {N: String(value)};
    const inner = tag && typeof tag === "object" ? tag : null;
    if (Array.isArray(value)) {
      return {L: value.map((member, i) => typed(member, inner ? inner[String(i)] : undefined))};
    }
    return {M: members(value, inner)};
  }
  function members(object, tags) {
    const out = Object.create(null);  // a member named __proto__ is a member like any other
    for (const name of Object.keys(object)) {
      const tag = tags && Object.prototype.hasOwnProperty.call(tags, name) ? tags[name] : undefined;
      out[name] = typed(object[name], tag);
    }
    return out;
  }
  if (item === null || item === "null") return null;
  const types = item_types === null || item_types === "null" ? null : JSON.parse(item_types);
  return JSON.stringify(members(JSON.parse(item), types));
""";
