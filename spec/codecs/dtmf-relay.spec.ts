import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseDtmfInfo } from '../../codecs/dtmf-relay.ts';

describe('parseDtmfInfo()', () => {
  const relay: Array<[string, string | undefined]> = [
    ['Signal=5\r\nDuration=160\r\n', '5'],
    ['Signal=0\r\nDuration=250\r\n', '0'],
    ['Signal=*\r\nDuration=160\r\n', '*'],
    ['Signal=#\r\nDuration=160\r\n', '#'],
    ['Signal=10\r\nDuration=160\r\n', '*'],
    ['Signal=11\r\nDuration=160\r\n', '#'],
    ['Signal=A\r\nDuration=160\r\n', 'A'],
    ['Signal=d\r\nDuration=160\r\n', 'D'],
    ['Signal=12\r\nDuration=160\r\n', 'A'],
    ['Signal=15\r\nDuration=160\r\n', 'D'],
    ['Duration=160\r\nSignal=7\r\n', '7'],
    ['signal = 9\nduration = 100\n', '9'],
    ['Signal=3', '3'],
    ['Signal=16\r\nDuration=160\r\n', undefined],
    ['Signal=E\r\nDuration=160\r\n', undefined],
    ['Signal=\r\nDuration=160\r\n', undefined],
    ['Duration=160\r\n', undefined],
    ['', undefined],
  ];
  for (const [body, digit] of relay) {
    it(`parseDtmfInfo('application/dtmf-relay', ${JSON.stringify(body)}) returns ${JSON.stringify(digit)}`, () => {
      assert.equal(parseDtmfInfo('application/dtmf-relay', body), digit);
    });
  }

  const plain: Array<[string, string | undefined]> = [
    ['5', '5'],
    ['#', '#'],
    ['*\r\n', '*'],
    [' B ', 'B'],
    ['11', '#'],
    ['55', undefined],
    ['', undefined],
  ];
  for (const [body, digit] of plain) {
    it(`parseDtmfInfo('application/dtmf', ${JSON.stringify(body)}) returns ${JSON.stringify(digit)}`, () => {
      assert.equal(parseDtmfInfo('application/dtmf', body), digit);
    });
  }

  it('parseDtmfInfo() matches the content type case-insensitively and ignores its parameters', () => {
    assert.equal(parseDtmfInfo('Application/DTMF-Relay; charset=utf-8', 'Signal=4\r\nDuration=160'), '4');
    assert.equal(parseDtmfInfo(' APPLICATION/DTMF ', '8'), '8');
  });

  it('parseDtmfInfo() returns undefined for other content types, even with a Signal line', () => {
    assert.equal(parseDtmfInfo('application/media_control+xml', 'Signal=5'), undefined);
    assert.equal(parseDtmfInfo('text/plain', '5'), undefined);
  });
});
