set terminal pngcairo size 900,560 noenhanced
set grid
set key outside right
set output 'scaling.png'
set title 'scaling: 4K random write first touch'
set xlabel 'faulting/handler threads (native: faulting threads)'
set ylabel 'faults/s'
unset logscale
plot 'scaling-native.dat' using 1:3:xtic(2) with linespoints title 'native', \
  'scaling-bare.dat' using 1:3:xtic(2) with linespoints title 'bare', \
  'scaling-spf.dat' using 1:3:xtic(2) with linespoints title 'spf', \
  'scaling-region.dat' using 1:3:xtic(2) with linespoints title 'region', \
  'scaling-global.dat' using 1:3:xtic(2) with linespoints title 'global', \
  'scaling-adaptive.dat' using 1:3:xtic(2) with linespoints title 'adaptive'
set output 'latency-same.png'
set title 'latency CDF: 4K random write first touch, placement same'
set xlabel 'ns per access'
set ylabel 'fraction of accesses'
set logscale x
plot 'latency-same-native.cdf' using 1:2 with lines title 'native', \
  'latency-same-bare.cdf' using 1:2 with lines title 'bare', \
  'latency-same-spf.cdf' using 1:2 with lines title 'spf', \
  'latency-same-region.cdf' using 1:2 with lines title 'region', \
  'latency-same-global.cdf' using 1:2 with lines title 'global', \
  'latency-same-adaptive.cdf' using 1:2 with lines title 'adaptive', \
  'latency-same-native-thp.cdf' using 1:2 with lines title 'native-thp'
set output 'latency-cross.png'
set title 'latency CDF: 4K random write first touch, placement cross'
set xlabel 'ns per access'
set ylabel 'fraction of accesses'
set logscale x
plot 'latency-cross-bare.cdf' using 1:2 with lines title 'bare', \
  'latency-cross-spf.cdf' using 1:2 with lines title 'spf', \
  'latency-cross-region.cdf' using 1:2 with lines title 'region', \
  'latency-cross-global.cdf' using 1:2 with lines title 'global', \
  'latency-cross-adaptive.cdf' using 1:2 with lines title 'adaptive'
set output 'latency-any.png'
set title 'latency CDF: 4K random write first touch, placement any'
set xlabel 'ns per access'
set ylabel 'fraction of accesses'
set logscale x
plot 'latency-any-bare.cdf' using 1:2 with lines title 'bare', \
  'latency-any-spf.cdf' using 1:2 with lines title 'spf', \
  'latency-any-region.cdf' using 1:2 with lines title 'region', \
  'latency-any-global.cdf' using 1:2 with lines title 'global', \
  'latency-any-adaptive.cdf' using 1:2 with lines title 'adaptive'
