// Reads a JSON array of bodies on stdin; writes, for each, what sms-segments-calculator
// (Twilio's calculator, npm) makes of it: encoding, part count and each part's text.
'use strict';
const { SegmentedMessage } = require('sms-segments-calculator');

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const answers = JSON.parse(input).map((body) => {
    const message = new SegmentedMessage(body);
    return {
      encoding: message.encodingName,
      parts: message.segmentsCount,
      texts: message.segments.map((part) => Array.from(part).filter((c) => !c.isUserDataHeader).map((c) => c.raw).join('')),
    };
  });
  process.stdout.write(JSON.stringify(answers));
});
