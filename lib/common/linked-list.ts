/** What an item of a LinkedList carries: its neighbours in the one list it is in. */
export interface Linked<T> {
  linkedOlder?: T;
  linkedNewer?: T;
}

/**
 * A list of per-call objects, newest first, linked through the items themselves: adding and removing allocate
 * nothing, and a removed item keeps no link, nor is linked to. Not a Set: a long-lived collection that every call
 * enters and leaves kept each call's objects alive through V8's young-generation collections (docs/performance.md,
 * "Objects that outlive their transaction"). An item is in at most one list.
 */
export class LinkedList<T extends Linked<T>> {
  /** How many items it holds. */
  size = 0;
  private newest?: T;

  add(item: T): void {
    item.linkedOlder = this.newest;
    if (this.newest) this.newest.linkedNewer = item;
    this.newest = item;
    this.size++;
  }

  /** Removes `item`; false when it was not in the list. */
  remove(item: T): boolean {
    const { linkedOlder: older, linkedNewer: newer } = item;
    if (newer) newer.linkedOlder = older;
    else if (this.newest === item) this.newest = older;
    else return false;
    if (older) older.linkedNewer = newer;
    item.linkedOlder = item.linkedNewer = undefined;
    this.size--;
    return true;
  }

  /** The items, newest first; the one the loop is on may be removed meanwhile. */
  *[Symbol.iterator](): IterableIterator<T> {
    for (let item = this.newest; item; ) {
      const older = item.linkedOlder;
      yield item;
      item = older;
    }
  }
}
