// expect: RangeError: Maximum BigInt size exceeded
return String((1n << 4000000000n) > 0n)
