// Big - the JVM workload of the preload tests and programs-bench.sh: N
// arrays of 1 MiB (long[131072]) filled, then summed twice; prints the sum.
// Usage: java Big N
public class Big {
    public static void main(String[] a) {
        int n = Integer.parseInt(a[0]);
        long[][] arr = new long[n][];
        for (int i = 0; i < n; i++) {
            arr[i] = new long[131072];
            for (int j = 0; j < arr[i].length; j++) arr[i][j] = (long) i * 1000003L + j;
        }
        long sum = 0;
        for (int r = 0; r < 2; r++)
            for (int i = 0; i < n; i++)
                for (int j = 0; j < arr[i].length; j += 7) sum += arr[i][j] ^ r;
        System.out.println("sum " + sum);
    }
}
