// Writes a copy of Twilio's OpenAPI description (argv[2] -> argv[3]) in which the encoding
// of array fields in form-encoded request bodies is explicit: {style: form, explode: true},
// which is OpenAPI 3's default for application/x-www-form-urlencoded (an array is sent as
// the same name repeated, as Twilio expects StatusCallbackEvent). Prism applies a style only
// where the spec declares one; without it every array field of a form body is refused with
// "must be array". Nothing else in the description changes.
'use strict';
const fs = require('fs');

const [input, output] = process.argv.slice(2);
if (!input || !output) {
  console.error('usage: node form-arrays.js INPUT.json OUTPUT.json');
  process.exit(2);
}
const spec = JSON.parse(fs.readFileSync(input, 'utf8'));
let fields = 0;
for (const item of Object.values(spec.paths || {})) {
  for (const operation of Object.values(item)) {
    const media = operation && operation.requestBody && operation.requestBody.content
      && operation.requestBody.content['application/x-www-form-urlencoded'];
    const properties = media && media.schema && media.schema.properties;
    if (!properties) continue;
    for (const [name, property] of Object.entries(properties)) {
      if (property.type !== 'array') continue;
      media.encoding = media.encoding || {};
      if (!media.encoding[name]) {
        media.encoding[name] = { style: 'form', explode: true };
        fields += 1;
      }
    }
  }
}
if (fields === 0) {
  console.error(`form-arrays.js: no array fields found in ${input}; has the description changed?`);
  process.exit(1);
}
fs.writeFileSync(output, JSON.stringify(spec));
console.error(`form-arrays.js: made the encoding of ${fields} array fields explicit`);
