/**
 * Sliding anti-replay window over message counters (a bitmap ring in the style
 * of RFC 6479). The receiver asks `accepts(counter)` before decrypting and
 * calls `commit(counter)` only after the frame authenticated, so forged
 * frames, whatever counter they claim, never move the window.
 *
 *   new ReplayWindow()
 *   window.accepts(counter): boolean        not seen and not too old; no state change
 *   window.commit(counter): boolean         records it; true when it is the new greatest
 *   window.greatest: number                 -1 before the first commit
 *
 * Counters are non-negative integers below 2^53. The window remembers the last
 * REPLAY_WINDOW_SIZE counters below the greatest one seen.
 */
const BITS = 4096;
const WORDS = BITS / 32;
/** How far below the greatest counter a late frame is still accepted (one word is slack). */
export const REPLAY_WINDOW_SIZE = BITS - 32;

export class ReplayWindow {
  private readonly words = new Uint32Array(WORDS);
  private top = -1;

  get greatest(): number {
    return this.top;
  }

  accepts(counter: number): boolean {
    if (counter > this.top) return true;
    if (this.top - counter >= REPLAY_WINDOW_SIZE) return false;
    const word = Math.floor(counter / 32) % WORDS;
    return (this.words[word]! & (1 << counter % 32)) === 0;
  }

  commit(counter: number): boolean {
    let advanced = false;
    if (counter > this.top) {
      const topWord = this.top < 0 ? -1 : Math.floor(this.top / 32);
      const newWord = Math.floor(counter / 32);
      const clear = Math.min(newWord - topWord, WORDS);
      for (let i = 1; i <= clear; i++) this.words[(topWord + i) % WORDS] = 0;
      this.top = counter;
      advanced = true;
    }
    const word = Math.floor(counter / 32) % WORDS;
    this.words[word] = this.words[word]! | (1 << counter % 32);
    return advanced;
  }
}
