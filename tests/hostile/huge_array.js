// expect: RangeError|memory|deadline exceeded
return Array.from({ length: 2 ** 32 - 1 }, (_, i) => i).length
